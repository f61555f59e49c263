package runners

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Limits of unpacking, against archive bombs.
const (
	maxEntries = 200_000
	// unpackFactor bounds the unpacked size as a multiple of the cache's
	// download limit.
	unpackFactor = 8
)

// BinaryName is the file a bare-binary release (Gitea's and Forgejo's
// runners) is installed as in its directory.
func BinaryName(k Kind) string {
	switch k {
	case KindGitea:
		return "gitea-runner"
	case KindForgejo:
		return "forgejo-runner"
	}
	return string(k) + "-runner"
}

// isTarGz reports whether a release's archive is a gzipped tar (by name).
func isTarGz(name string) bool {
	return strings.HasSuffix(name, ".tar.gz") || strings.HasSuffix(name, ".tgz")
}

// unpack installs the archive at src into the new directory dst: a
// tar.gz is extracted safely, anything else is one executable named
// BinaryName(kind). limit bounds the bytes written.
func unpack(src, dst string, kind Kind, name string, limit int64) error {
	if err := os.Mkdir(dst, 0o755); err != nil {
		return err
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	if !isTarGz(name) {
		return writeFile(filepath.Join(dst, BinaryName(kind)), f, 0o755, limit)
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%w: %s: not gzip: %v", ErrUnsafeArchive, name, err)
	}
	defer zr.Close()
	return untar(tar.NewReader(zr), dst, limit)
}

// untar extracts a tar into dst. It refuses (ErrUnsafeArchive) absolute
// names and names with .. that leave dst; entries under a symbolic link or
// a file (every parent must be a real directory, and files are created
// with O_EXCL|O_NOFOLLOW, so nothing is ever written through a link or
// over an earlier entry); symbolic links that are absolute, leave dst or
// point higher in the tree than where they sit (so that no chain of links
// and .. leaves the tree when the runner follows them); hard links,
// devices and FIFOs; and more than limit bytes or maxEntries entries.
// Set-id and sticky bits are dropped; files are 0644 or 0755.
func untar(tr *tar.Reader, dst string, limit int64) error {
	var written int64
	for n := 0; ; n++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnsafeArchive, err)
		}
		if n >= maxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrUnsafeArchive, maxEntries)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		rel, err := entryPath(h.Name)
		if err != nil {
			return err
		}
		if rel == "." {
			continue
		}
		if err := realDirs(dst, path.Dir(rel)); err != nil {
			return err
		}
		full := filepath.Join(dst, filepath.FromSlash(rel))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := realDirs(dst, rel); err != nil {
				return err
			}
		case tar.TypeReg:
			mode := os.FileMode(0o644)
			if h.Mode&0o111 != 0 {
				mode = 0o755
			}
			if h.Size < 0 || written+h.Size > limit {
				return fmt.Errorf("%w: unpacked size over %d bytes", ErrUnsafeArchive, limit)
			}
			if err := writeFile(full, tr, mode, h.Size); err != nil {
				return err
			}
			written += h.Size
		case tar.TypeSymlink:
			if err := checkLink(rel, h.Linkname); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, full); err != nil {
				return fmt.Errorf("%w: %s: %v", ErrUnsafeArchive, rel, err)
			}
		default:
			return fmt.Errorf("%w: %s: entry type %q refused", ErrUnsafeArchive, rel, string(h.Typeflag))
		}
	}
}

// entryPath cleans an entry name to a slash path relative to the root.
func entryPath(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) || strings.ContainsRune(name, '\\') || path.IsAbs(name) {
		return "", fmt.Errorf("%w: entry name %q", ErrUnsafeArchive, name)
	}
	rel := path.Clean(name)
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%w: entry %q leaves the directory", ErrUnsafeArchive, name)
	}
	return rel, nil
}

// checkLink vets a symbolic link at rel pointing to target.
func checkLink(rel, target string) error {
	if target == "" || strings.ContainsRune(target, 0) || path.IsAbs(target) {
		return fmt.Errorf("%w: link %s -> %q", ErrUnsafeArchive, rel, target)
	}
	to := path.Join(path.Dir(rel), target)
	if to == ".." || strings.HasPrefix(to, "../") {
		return fmt.Errorf("%w: link %s -> %q leaves the directory", ErrUnsafeArchive, rel, target)
	}
	if depth(to) < depth(rel) {
		return fmt.Errorf("%w: link %s -> %q points above itself", ErrUnsafeArchive, rel, target)
	}
	return nil
}

func depth(p string) int {
	if p == "." {
		return 0
	}
	return strings.Count(p, "/") + 1
}

// realDirs makes sure every element of rel under root is a real
// directory, creating the missing ones; a symbolic link or a file on the
// way is refused.
func realDirs(root, rel string) error {
	if rel == "." {
		return nil
	}
	cur := root
	for _, el := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, el)
		fi, err := os.Lstat(cur)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(cur, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case !fi.IsDir():
			return fmt.Errorf("%w: %s is not a directory (a link or a file) but holds entries", ErrUnsafeArchive, rel)
		}
	}
	return nil
}

// writeFile creates the new file p (never following a link, never over an
// existing file) with at most limit bytes of r.
func writeFile(p string, r io.Reader, mode os.FileMode, limit int64) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|nofollow, mode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s appears twice", ErrUnsafeArchive, filepath.Base(p))
		}
		return err
	}
	n, err := io.Copy(f, io.LimitReader(r, limit+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if n > limit {
		return fmt.Errorf("%w: %s is over %d bytes", ErrUnsafeArchive, filepath.Base(p), limit)
	}
	return nil
}
