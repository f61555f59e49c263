// Package builtin registers the provider types corral is built with. To
// add a type, write its package (which calls provider.Register in an init
// function) and add one import line here.
package builtin

import (
	_ "github.com/corral-ci/corral/internal/provider/docker"     // type docker
	_ "github.com/corral-ci/corral/internal/provider/garm"       // type garm
	_ "github.com/corral-ci/corral/internal/provider/kubernetes" // type kubernetes
	_ "github.com/corral-ci/corral/internal/provider/plugin"     // type plugin
	_ "github.com/corral-ci/corral/internal/provider/process"    // type process
	_ "github.com/corral-ci/corral/internal/provider/qemu"       // type qemu
	_ "github.com/corral-ci/corral/internal/provider/shoes"      // type shoes
)
