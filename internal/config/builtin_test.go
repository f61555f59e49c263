package config

// The provider types a config names are those registered; tests see the
// built-in ones, as corral does.
import _ "github.com/corral-ci/corral/internal/provider/builtin"
