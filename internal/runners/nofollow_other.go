//go:build !unix

package runners

const nofollow = 0
