package providerplugin

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

type fake struct {
	list   []Instance
	err    error
	health error
	got    string
}

func (f *fake) Create(_ context.Context, s Spec) (Instance, error) {
	f.got = s.InstanceID + " " + s.Bootstrap.Env["TOKEN"]
	return Instance{ProviderID: "p-" + s.InstanceID, InstanceID: s.InstanceID, State: StateRunning}, f.err
}
func (f *fake) Delete(_ context.Context, ref InstanceRef) error { f.got = ref.ProviderID; return f.err }
func (f *fake) Get(_ context.Context, ref InstanceRef) (Instance, error) {
	return Instance{}, Errorf(KindNotFound, "no %s", ref.ProviderID)
}
func (f *fake) List(_ context.Context, c string) ([]Instance, error) { f.got = c; return f.list, f.err }
func (f *fake) Health(context.Context) error                         { return f.health }

func serveOne(t *testing.T, p Provider, command, req string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := ServeIO(context.Background(), Info{Name: "fake", Version: "0.1"}, p, command, strings.NewReader(req), &out)
	return code, strings.TrimSpace(out.String())
}

func TestServe(t *testing.T) {
	cases := []struct {
		name, command, req string
		f                  *fake
		code               int
		want               string
		got                string // what the fake was called with
	}{
		{"handshake", CmdHandshake, `{"protocol":1,"command":"handshake","protocols":[1]}`, &fake{}, 0,
			`{"handshake":{"protocol":1,"name":"fake","version":"0.1"}}`, ""},
		{"handshake_incompatible", CmdHandshake, `{"protocol":2,"command":"handshake","protocols":[2,3]}`, &fake{}, 1,
			`{"error":{"kind":"incompatible","message":"plugin fake speaks protocol 1, corral offers [2 3]"}}`, ""},
		{"request_of_other_version", CmdList, `{"protocol":2,"command":"list"}`, &fake{}, 1,
			`{"error":{"kind":"incompatible","message":"plugin fake speaks protocol 1, the request is protocol 2"}}`, ""},
		{"command_mismatch", CmdList, `{"protocol":1,"command":"create"}`, &fake{}, 1,
			`{"error":{"kind":"bad_input","message":"command \"list\" in the environment, \"create\" in the request"}}`, ""},
		{"garbage_request", CmdList, `nope`, &fake{}, 1, `"kind":"bad_input"`, ""},
		{"unknown_command", "reboot", `{"protocol":1,"command":"reboot"}`, &fake{}, 1,
			`{"error":{"kind":"bad_input","message":"unknown command \"reboot\""}}`, ""},
		{"empty_list", CmdList, `{"protocol":1,"command":"list","controller_id":"c1"}`, &fake{}, 0, `{"instances":[]}`, "c1"},
		{"create", CmdCreate, `{"protocol":1,"command":"create","spec":{"instance_id":"i1","bootstrap":{"env":{"TOKEN":"t"}}}}`, &fake{}, 0,
			`{"instance":{"provider_id":"p-i1","instance_id":"i1","state":"running"}}`, "i1 t"},
		{"create_without_spec", CmdCreate, `{"protocol":1,"command":"create"}`, &fake{}, 1, `"message":"create without spec"`, ""},
		{"delete", CmdDelete, `{"protocol":1,"command":"delete","instance":{"provider_id":"p1","instance_id":"i1"}}`, &fake{}, 0, `{}`, "p1"},
		{"get_not_found", CmdGet, `{"protocol":1,"command":"get","instance":{"provider_id":"p1","instance_id":"i1"}}`, &fake{}, 1,
			`{"error":{"kind":"not_found","message":"no p1"}}`, ""},
		{"plain_error_is_internal", CmdList, `{"protocol":1,"command":"list"}`, &fake{err: errors.New("boom")}, 1,
			`{"error":{"kind":"internal","message":"boom"}}`, ""},
		{"unhealthy", CmdHealth, `{"protocol":1,"command":"health"}`, &fake{health: errors.New("backend down")}, 0,
			`{"health":{"ok":false,"message":"backend down"}}`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out := serveOne(t, c.f, c.command, c.req)
			if code != c.code || !strings.Contains(out, c.want) {
				t.Errorf("exit %d, answer %s; want exit %d and %s", code, out, c.code, c.want)
			}
			if c.f.got != c.got {
				t.Errorf("provider called with %q, want %q", c.f.got, c.got)
			}
		})
	}
}
