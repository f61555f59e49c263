package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/pluginexec"
	pp "github.com/corral-ci/corral/pkg/providerplugin"
)

// PluginError is a failed invocation: which plugin, which command, what
// went wrong, and the end of what the plugin wrote to standard error.
type PluginError struct {
	Provider string // the provider instance's name
	Path     string
	Command  string
	Err      error
	Stderr   string // its tail
}

func (e *PluginError) Error() string {
	s := fmt.Sprintf("plugin %s (%s) %s: %v", e.Provider, e.Path, e.Command, e.Err)
	if e.Stderr != "" {
		s += "; stderr: " + strconv.Quote(e.Stderr)
	}
	return s
}

func (e *PluginError) Unwrap() error { return e.Err }

// ids are the ids an invocation carries in its environment.
type ids struct {
	controller, instance, pool string
}

// run invokes the plugin for one command and returns its standard output
// when it exited 0, and the tail of its standard error. Every failure is a
// *PluginError.
func (p *Provider) run(ctx context.Context, command string, req pp.Request, id ids) ([]byte, string, error) {
	fail := func(stderr string, err error) ([]byte, string, error) {
		return nil, stderr, &PluginError{Provider: p.name, Path: p.s.Path, Command: command, Err: err, Stderr: stderr}
	}
	req.Protocol, req.Command = pp.ProtocolVersion, command
	in, err := json.Marshal(req)
	if err != nil {
		return fail("", fmt.Errorf("%w: encode request: %w", corral.ErrBadInput, err))
	}
	res, err := pluginexec.Run(ctx, pluginexec.Cmd{Path: p.s.Path, Args: p.s.Args, Env: p.environ(command, id),
		Stdin: in, Timeout: p.s.timeout(command), MaxOutput: p.maxOutput()})
	if err != nil {
		return fail(res.Stderr, err)
	}
	if res.Exit != nil {
		return fail(res.Stderr, exitError(res, res.Stdout))
	}
	return res.Stdout, res.Stderr, nil
}

// exitError explains a non-zero exit: the plugin's own error answer when it
// gave one, otherwise how it died.
func exitError(res pluginexec.Result, stdout []byte) error {
	var r struct {
		Error *pp.Error `json:"error"`
	}
	if json.Unmarshal(stdout, &r) == nil && r.Error != nil && r.Error.Message != "" {
		return fmt.Errorf("%w: %s", kindErr(r.Error.Kind), r.Error.Message)
	}
	if res.ExitCode() < 0 {
		return fmt.Errorf("%w: crashed: %s", corral.ErrUnavailable, res.Died())
	}
	return fmt.Errorf("%w: crashed: %s without an error answer", corral.ErrUnavailable, res.Died())
}

// kindErr maps an error kind to corral's errors.
func kindErr(kind string) error {
	switch kind {
	case pp.KindNotFound:
		return corral.ErrNotFound
	case pp.KindBadInput:
		return corral.ErrBadInput
	case pp.KindConflict:
		return corral.ErrConflict
	case pp.KindIncompatible:
		return errIncompatible
	default:
		return corral.ErrUnavailable
	}
}

var errIncompatible = fmt.Errorf("%w: incompatible plugin", corral.ErrBadInput)

func (p *Provider) maxOutput() int {
	if p.s.MaxOutputBytes > 0 {
		return p.s.MaxOutputBytes
	}
	return DefaultMaxOutput
}

// environ is the plugin's whole environment: PATH, the configured env and
// the protocol's variables. Nothing else of corral's environment (its
// secrets) reaches it.
func (p *Provider) environ(command string, id ids) []string {
	env := pluginexec.Environ()
	for k, v := range p.s.Env {
		env = append(env, k+"="+v)
	}
	return append(env,
		pp.EnvCommand+"="+command,
		pp.EnvProtocol+"="+strconv.Itoa(pp.ProtocolVersion),
		pp.EnvProviderName+"="+p.name,
		pp.EnvConfigFile+"="+p.s.ConfigFile,
		pp.EnvControllerID+"="+id.controller,
		pp.EnvInstanceID+"="+id.instance,
		pp.EnvPoolID+"="+id.pool,
	)
}
