package runners

import (
	"archive/tar"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestUnpack(t *testing.T) {
	file := func(name string) tarEntry { return tarEntry{name: name, body: "x"} }
	link := func(name, to string) tarEntry { return tarEntry{name: name, typ: tar.TypeSymlink, link: to} }
	dir := func(name string) tarEntry { return tarEntry{name: name, typ: tar.TypeDir, mode: 0o755} }
	cases := []struct {
		name    string
		entries []tarEntry
		ok      bool
	}{
		{"plain tree", []tarEntry{dir("a/"), file("a/b"), file("c/d/e"), link("c/l", "d/e")}, true},
		{"link down the tree", []tarEntry{file("lib/x.js"), link("bin/x", "../lib/x.js")}, true},
		{"link at the same depth", []tarEntry{file("lib/libfoo.so.1"), link("lib/libfoo.so", "libfoo.so.1")}, true},
		{"dot dot", []tarEntry{file("../x")}, false},
		{"dot dot inside", []tarEntry{file("a/../../x")}, false},
		{"absolute", []tarEntry{file("/etc/x")}, false},
		{"absolute link", []tarEntry{link("l", "/etc/passwd")}, false},
		{"link out", []tarEntry{link("a/l", "../../x")}, false},
		{"link to itself's directory", []tarEntry{link("s", ".")}, false},
		{"link up then dot dot", []tarEntry{dir("d/"), link("d/up", "..")}, false},
		{"write through a link", []tarEntry{dir("sub/"), link("l", "sub"), file("l/f")}, false},
		{"file replaced by a link", []tarEntry{file("f"), link("f", "g")}, false},
		{"duplicate file", []tarEntry{file("f"), file("f")}, false},
		{"hard link", []tarEntry{file("f"), {name: "h", typ: tar.TypeLink, link: "f"}}, false},
		{"device", []tarEntry{{name: "dev", typ: tar.TypeChar}}, false},
		{"backslash", []tarEntry{file(`..\x`)}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			src := filepath.Join(base, "a.tar.gz")
			if err := os.WriteFile(src, tgz(t, tc.entries...), 0o644); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(base, "out", "root")
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			err := unpack(src, dst, KindGitHub, "a.tar.gz", 1<<20)
			if tc.ok && err != nil {
				t.Fatalf("unpack = %v, want success", err)
			}
			if !tc.ok && !errors.Is(err, ErrUnsafeArchive) {
				t.Fatalf("unpack = %v, want ErrUnsafeArchive", err)
			}
			for _, p := range []string{filepath.Join(base, "x"), filepath.Join(base, "out", "x"), filepath.Join(base, "out", "f")} {
				if _, err := os.Lstat(p); err == nil {
					t.Fatalf("%s written outside the directory", p)
				}
			}
		})
	}
	t.Run("size limit", func(t *testing.T) {
		base := t.TempDir()
		src := filepath.Join(base, "a.tar.gz")
		if err := os.WriteFile(src, tgz(t, tarEntry{name: "big", body: string(make([]byte, 2048))}), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := unpack(src, filepath.Join(base, "root"), KindGitHub, "a.tar.gz", 1024); !errors.Is(err, ErrUnsafeArchive) {
			t.Fatalf("unpack = %v, want ErrUnsafeArchive", err)
		}
	})
	t.Run("bare binary", func(t *testing.T) {
		base := t.TempDir()
		src := filepath.Join(base, "forgejo-runner-12.8.0-linux-amd64")
		if err := os.WriteFile(src, []byte("ELF"), 0o644); err != nil {
			t.Fatal(err)
		}
		root := filepath.Join(base, "root")
		if err := unpack(src, root, KindForgejo, filepath.Base(src), 1024); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(root, "forgejo-runner"))
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Fatalf("binary: %v, %v", fi, err)
		}
	})
}

func TestCompareVersions(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"2.330.0", "2.330.0", 0},
		{"v2.330.0", "2.330.0", 0},
		{"2.330.0", "2.329.9", 1},
		{"2.9.0", "2.10.0", -1},
		{"1.0", "1.0.0", 0},
		{"1.0.0-rc1", "1.0.0", -1},
		{"junk", "0.0.1", -1},
	}
	for _, tc := range cases {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
