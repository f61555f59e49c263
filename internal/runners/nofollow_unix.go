//go:build unix

package runners

import "syscall"

const nofollow = syscall.O_NOFOLLOW
