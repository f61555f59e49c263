package doctor

import (
	"os"
	"testing"

	"github.com/corral-ci/corral/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
