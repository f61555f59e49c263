package docker

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
)

func TestSettings_Validate(t *testing.T) {
	s := &Settings{Network: "bridge", DindCapabilities: []string{"CAP_SYS_ADMIN", "a b"}, Endpoints: []EndpointSettings{
		{Name: "a", Host: "unix:///run/docker.sock"},
		{Name: "a", Host: "http://x"},
		{Name: "c", Host: "tcp://10.0.0.1:2376", MaxInstances: -1},
	}}
	var fes provider.FieldErrors
	if err := s.Validate(); !errors.As(err, &fes) {
		t.Fatalf("Validate = %v, want FieldErrors", err)
	}
	got := map[string]bool{}
	for _, fe := range fes {
		got[fe.Field] = true
	}
	for _, want := range []string{"network", "endpoints[1].name", "endpoints[1].host", "endpoints[2].host", "endpoints[2].max_instances", "dind_capabilities[1]"} {
		if !got[want] {
			t.Errorf("no problem at %s: %v", want, fes)
		}
	}
	if err := (&Settings{}).Validate(); err != nil {
		t.Errorf("default settings: %v", err)
	}
	if c := (&Settings{}).Config(provider.Env{}); len(c.Endpoints) != 1 || c.Endpoints[0].Host != "unix:///var/run/docker.sock" || c.Validate() != nil {
		t.Errorf("default config = %+v", c)
	}
}

func TestPoolOptions(t *testing.T) {
	o := &PoolOptions{DockerInDocker: true}
	if err := o.Validate(&Settings{}); err == nil || !strings.Contains(err.Error(), "dind_image") {
		t.Errorf("docker_in_docker without a dind image: %v", err)
	}
	if err := o.Validate(&Settings{DindImage: "docker:dind"}); err != nil {
		t.Error(err)
	}
	got, err := poolOptions(corral.InstanceSpec{Options: json.RawMessage(`{"docker_in_docker":true}`)})
	if err != nil || !got.DockerInDocker {
		t.Errorf("poolOptions = %+v, %v", got, err)
	}
	if _, err := poolOptions(corral.InstanceSpec{Options: json.RawMessage(`{"docker_in_dokcer":true}`)}); !errors.Is(err, corral.ErrBadInput) {
		t.Errorf("an unknown option = %v, want ErrBadInput", err)
	}
}
