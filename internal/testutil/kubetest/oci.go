package kubetest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"runtime"
	"time"

	"github.com/corral-ci/corral/internal/testutil/dockertest"
)

// ImageArchive returns an image in the Docker archive format (what
// `docker save` writes and `ctr images import` reads) named
// corral.local/NAME:<content hash>, and that reference: a static busybox,
// /tmp and the files (path in the image -> file on this host), with the
// environment and, when given, the entrypoint.
func ImageArchive(name string, files map[string]string, env, entrypoint []string) ([]byte, string, error) {
	layer, layerSum, err := dockertest.Rootfs(files)
	if err != nil {
		return nil, "", err
	}
	type imageConfig struct {
		Env        []string `json:"Env,omitempty"`
		Entrypoint []string `json:"Entrypoint,omitempty"`
		WorkingDir string   `json:"WorkingDir,omitempty"`
	}
	cfg, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      time.Unix(0, 0).UTC(),
		"config":       imageConfig{Env: append([]string{"PATH=/bin"}, env...), Entrypoint: entrypoint},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerSum}},
	})
	if err != nil {
		return nil, "", err
	}
	cfgSum := sha256.Sum256(cfg)
	cfgName := hex.EncodeToString(cfgSum[:]) + ".json"
	ref := "corral.local/" + name + ":" + hex.EncodeToString(cfgSum[:])[:16]
	manifest, err := json.Marshal([]map[string]any{{
		"Config": cfgName, "RepoTags": []string{ref}, "Layers": []string{layerSum + "/layer.tar"},
	}})
	if err != nil {
		return nil, "", err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		b    []byte
	}{{cfgName, cfg}, {layerSum + "/layer.tar", layer}, {"manifest.json", manifest}} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.b)), ModTime: time.Unix(0, 0)}); err != nil {
			return nil, "", err
		}
		if _, err := tw.Write(f.b); err != nil {
			return nil, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), ref, nil
}
