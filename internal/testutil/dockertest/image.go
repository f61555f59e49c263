package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// Busybox is where Image takes the busybox binary from (Debian's
// busybox-static package).
const Busybox = "/bin/busybox"

var imageMu sync.Mutex // one build at a time per process

// Image returns a reference to an image FROM scratch on the engine behind
// Socket that holds a static busybox (/bin/busybox and a symlink in /bin
// for each of its applets: sh, sleep, cat, timeout, tar, ...), an empty /tmp
// and the given files (path in the image -> file on this host, copied with
// its mode). The image is named name:<content hash>, so a second call with
// the same content finds it in the engine instead of building it again.
func Image(t testing.TB, name string, files map[string]string) string {
	t.Helper()
	return ImageOn(t, Socket(t), name, files)
}

// ImageOn is Image on the engine at host (e.g. a Daemon's Host).
func ImageOn(t testing.TB, host, name string, files map[string]string) string {
	t.Helper()
	if _, err := os.Stat(Busybox); err != nil {
		skipOrFail(t, ErrNoBusybox)
	}
	imageMu.Lock()
	defer imageMu.Unlock()
	layer, sum, err := imageTar(files)
	if err != nil {
		t.Fatal(err)
	}
	ref := name + ":" + sum[:16]
	c, err := client.New(client.WithHost(host))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.ImageInspect(ctx, ref); err == nil {
		return ref
	}
	res, err := c.ImageImport(ctx, client.ImageImportSource{Source: bytes.NewReader(layer), SourceName: "-"}, ref,
		client.ImageImportOptions{Message: "corral dockertest"})
	if err != nil {
		t.Fatalf("dockertest: import image %s: %v", ref, err)
	}
	defer res.Close()
	if _, err := io.Copy(io.Discard, res); err != nil {
		t.Fatalf("dockertest: import image %s: %v", ref, err)
	}
	if _, err := c.ImageInspect(ctx, ref); err != nil {
		t.Fatalf("dockertest: image %s missing after import: %v", ref, err)
	}
	return ref
}

// imageTar writes the image's only layer and returns it with its hash.
func imageTar(files map[string]string) ([]byte, string, error) {
	bb, err := os.ReadFile(Busybox)
	if err != nil {
		return nil, "", fmt.Errorf("dockertest: %w (apt-get install -y busybox-static)", err)
	}
	if err := checkStatic(Busybox); err != nil {
		return nil, "", err
	}
	applets, err := exec.Command(Busybox, "--list").Output()
	if err != nil {
		return nil, "", fmt.Errorf("dockertest: busybox --list: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(0, 0)
	dirs := map[string]bool{}
	mkdir := func(p string, mode int64) error {
		for _, d := range parents(p) {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			m := int64(0o755)
			if d == p {
				m = mode
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: m, ModTime: mtime}); err != nil {
				return err
			}
		}
		return nil
	}
	file := func(p string, mode int64, b []byte) error {
		if err := mkdir(path.Dir(p), 0o755); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(b)), ModTime: mtime}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := mkdir("tmp", 0o1777); err != nil {
		return nil, "", err
	}
	if err := file("bin/busybox", 0o755, bb); err != nil {
		return nil, "", err
	}
	for _, a := range strings.Fields(string(applets)) {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: mtime}); err != nil {
			return nil, "", err
		}
	}
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	slices.Sort(names)
	for _, p := range names {
		clean := strings.TrimPrefix(path.Clean("/"+p), "/")
		if clean == "" || strings.HasPrefix(clean, "bin/busybox") {
			return nil, "", fmt.Errorf("dockertest: bad image path %q", p)
		}
		fi, err := os.Stat(files[p])
		if err != nil {
			return nil, "", fmt.Errorf("dockertest: %w", err)
		}
		b, err := os.ReadFile(files[p])
		if err != nil {
			return nil, "", fmt.Errorf("dockertest: %w", err)
		}
		if err := file(clean, int64(fi.Mode().Perm()), b); err != nil {
			return nil, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), hex.EncodeToString(sum[:]), nil
}

// parents returns p's ancestors and p itself, outermost first ("a/b" ->
// "a", "a/b").
func parents(p string) []string {
	if p == "." || p == "" {
		return nil
	}
	return append(parents(path.Dir(p)), p)
}

// checkStatic fails for a dynamically linked binary, which cannot run in
// an image FROM scratch.
func checkStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("dockertest: %s: %w", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("dockertest: %s is dynamically linked; it cannot run FROM scratch (apt-get install -y busybox-static)", bin)
		}
	}
	return nil
}

// Rootfs returns the layer that Image would import (a static busybox,
// /tmp and the files) and its sha256 in hex, for runtimes that take an
// image archive instead of a Docker engine (kubetest's containerd).
func Rootfs(files map[string]string) ([]byte, string, error) {
	imageMu.Lock()
	defer imageMu.Unlock()
	return imageTar(files)
}
