// Command testrunner is providertest's test runner as a binary of its own,
// for images: the Docker provider's tests build it with CGO_ENABLED=0 (the
// -race test binary is not static) and put it in an image FROM scratch.
package main

import (
	"os"

	"github.com/corral-ci/corral/internal/provider/providertest"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case providertest.RunnerArg:
			os.Exit(providertest.RunTestRunner())
		case providertest.GrandchildArg:
			os.Exit(providertest.RunGrandchild())
		case providertest.HostileArg:
			os.Exit(providertest.RunHostile())
		}
	}
	os.Stderr.WriteString("usage: testrunner " + providertest.RunnerArg + "|" + providertest.GrandchildArg + "\n")
	os.Exit(2)
}
