package plugin

// faultArg makes the test binary play a misbehaving plugin.
const faultArg = "corral-test-fault-plugin"

func runFault(args []string) int { return 0 }
