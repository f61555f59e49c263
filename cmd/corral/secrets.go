package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/corral-ci/corral/internal/catalog"
	"github.com/corral-ci/corral/internal/secretbox"
)

const secretsUsage = `corral secrets rotate: re-seal every sealed secret in the store under a new key

  corral secrets rotate -config FILE -old-key FILE -new-key FILE

Each key is a file of 32 bytes (as DATA_DIR/secret.key) or of their base64; or
the environment: CORRAL_OLD_SECRET_KEY and CORRAL_NEW_SECRET_KEY (base64). The
credentials of targets written through the API are opened with the old key
and sealed with the new one in one transaction: if one does not open,
nothing changes. Then give every replica the new key (CORRAL_SECRET_KEY or
DATA_DIR/secret.key) and restart it; a replica still on the old key cannot
open them meanwhile.
`

func runSecrets(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "rotate" {
		fmt.Fprint(stderr, secretsUsage)
		return exitError(2)
	}
	fs := flag.NewFlagSet("secrets rotate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, secretsUsage) }
	path := fs.String("config", os.Getenv("CORRAL_CONFIG"), "config file (env CORRAL_CONFIG)")
	oldKey := fs.String("old-key", "", "file of the key the secrets are sealed with now")
	newKey := fs.String("new-key", "", "file of the key to seal them with")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 {
		return exitError(2)
	}
	if *path == "" {
		fmt.Fprintln(stderr, "corral secrets rotate: -config FILE is required (or set CORRAL_CONFIG)")
		return exitError(2)
	}
	oldBox, err := keyBox(*oldKey, "CORRAL_OLD_SECRET_KEY", "-old-key")
	if err != nil {
		return err
	}
	newBox, err := keyBox(*newKey, "CORRAL_NEW_SECRET_KEY", "-new-key")
	if err != nil {
		return err
	}
	cfg, _, err := loadConfig(*path, stderr)
	if err != nil {
		return err
	}
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return err
	}
	store, err := openStore(ctx, cfg, newLogger(cfg.Log, io.Discard))
	if err != nil {
		return err
	}
	defer store.Close()
	n, err := catalog.Rotate(ctx, store, oldBox, newBox)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "re-sealed %d secrets under the new key; now give every replica the new key\n", n)
	return nil
}

// keyBox reads a key from a file (32 bytes, or their base64) or from the
// environment variable env (base64).
func keyBox(file, env, flagName string) (*secretbox.Box, error) {
	var key []byte
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flagName, err)
		}
		key = b
		if len(b) != 32 {
			if d, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(b))); err == nil {
				key = d
			}
		}
	case os.Getenv(env) != "":
		d, err := base64.StdEncoding.DecodeString(os.Getenv(env))
		if err != nil {
			return nil, fmt.Errorf("%s: not base64", env)
		}
		key = d
	default:
		return nil, fmt.Errorf("corral secrets rotate: %s FILE or %s is required", flagName, env)
	}
	return secretbox.New(key, "")
}
