package vault

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// File layout: each key is one file named hex(SHA-256(key)) + itemSuffix,
// holding fileMagic, the key, a newline, then the value. Naming files by hash
// keeps keys that differ only in case apart on case-insensitive file systems,
// avoids reserved Windows names and bounds the name length; the key inside
// the file lets List recover it and Get detect a misplaced file.
const (
	fileMagic    = "presence-vault 1\n"
	itemSuffix   = ".item"
	itemNameLen  = 2*sha256.Size + len(itemSuffix)
	tempPrefix   = ".tmp-" // never a prefix of an item name
	staleTempAge = 10 * time.Minute
	maxHeaderLen = len(fileMagic) + MaxKeyLen + 1
)

// posixPerms reports whether file modes control access. On Windows the store
// relies on the ACLs of the user's profile directory instead.
var posixPerms = runtime.GOOS != "windows"

// File is a [Store] that keeps one file per key in a directory. Writes are
// atomic (a temporary file is synced, then renamed over the old one) and
// durable (the directory is synced too). It is safe for concurrent use.
//
// The values are not encrypted: the directory is mode 0700 and the files
// 0600, so only the owner (and root) can read them.
type File struct {
	dir string
}

var _ Store = (*File)(nil)

// NewFile returns a file store in dir. It creates dir with mode 0700 if
// needed, tightens the modes of an existing dir and its item files to
// 0700 and 0600, and removes temporary files that an interrupted write left
// behind more than ten minutes ago.
func NewFile(dir string) (*File, error) {
	if dir == "" {
		return nil, errors.New("vault: the file store needs a directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("vault: create the vault directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("vault: %s is not a directory", dir)
	}
	if posixPerms && fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("vault: make the vault directory private: %w", err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		isTemp, isItem := strings.HasPrefix(name, tempPrefix), isItemName(name)
		if !isTemp && !isItem {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since ReadDir
		}
		if err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
		path := filepath.Join(dir, name)
		switch {
		case isTemp && time.Since(info.ModTime()) > staleTempAge:
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("vault: remove a leftover temporary file: %w", err)
			}
		case isItem && posixPerms && info.Mode().Perm()&0o077 != 0:
			if err := os.Chmod(path, 0o600); err != nil {
				return nil, fmt.Errorf("vault: make a vault file private: %w", err)
			}
		}
	}
	return &File{dir: dir}, nil
}

// Dir returns the directory of the store.
func (s *File) Dir() string { return s.dir }

// Get implements [Store].
func (s *File) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkCall(ctx, key); err != nil {
		return nil, err
	}
	name := itemName(key)
	const maxFile = maxHeaderLen + ItemLimit
	data, err := s.read(name, maxFile+1) // one byte more to detect an oversized file
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	if err != nil {
		return nil, err
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("%w: %s is larger than any vault item", ErrCorrupt, filepath.Join(s.dir, name))
	}
	_, value, err := s.parseItem(name, data)
	if err != nil {
		return nil, err
	}
	if len(value) > ItemLimit {
		return nil, fmt.Errorf("%w: %s is larger than any vault item", ErrCorrupt, filepath.Join(s.dir, name))
	}
	return value, nil
}

// Set implements [Store].
func (s *File) Set(ctx context.Context, key string, value []byte) error {
	if err := checkSet(ctx, key, value, ItemLimit); err != nil {
		return err
	}
	data := make([]byte, 0, len(fileMagic)+len(key)+1+len(value))
	data = append(data, fileMagic...)
	data = append(data, key...)
	data = append(data, '\n')
	data = append(data, value...)
	if err := s.write(itemName(key), data); err != nil {
		return fmt.Errorf("vault: write %q: %w", key, err)
	}
	return nil
}

// Delete implements [Store].
func (s *File) Delete(ctx context.Context, key string) error {
	if err := checkCall(ctx, key); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(s.dir, itemName(key)))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	if err != nil {
		return fmt.Errorf("vault: delete %q: %w", key, err)
	}
	return s.syncDir()
}

// List implements [Store]. It reads the key from the start of every item
// file; a damaged item file is an error rather than a silently missing key.
func (s *File) List(ctx context.Context, prefix string) ([]string, error) {
	if err := checkList(ctx, prefix); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	var keys []string
	for _, e := range entries {
		name := e.Name()
		if !isItemName(name) {
			continue // temporary or foreign file
		}
		head, err := s.read(name, maxHeaderLen)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted since ReadDir
		}
		if err != nil {
			return nil, err
		}
		key, _, err := s.parseItem(name, head)
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// read returns at most the first n bytes of the item file name.
func (s *File) read(name string, n int) ([]byte, error) {
	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	defer f.Close() // read-only: Close reports nothing useful
	data, err := io.ReadAll(io.LimitReader(f, int64(n)))
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	return data, nil
}

// write atomically replaces the item file name with data.
func (s *File) write(name string, data []byte) (err error) {
	// CreateTemp makes the file with mode 0600.
	f, err := os.CreateTemp(s.dir, tempPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close() // already failing; a second Close error adds nothing
			if rerr := os.Remove(tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = errors.Join(err, rerr)
			}
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, filepath.Join(s.dir, name)); err != nil {
		return err
	}
	return s.syncDir()
}

// syncDir makes a rename or removal in the directory durable. Windows cannot
// sync a directory and does not need to.
func (s *File) syncDir() error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("vault: sync the vault directory: %w", err)
	}
	return nil
}

// parseItem splits the contents of the item file name into key and value.
func (s *File) parseItem(name string, data []byte) (key string, value []byte, err error) {
	rest, ok := bytes.CutPrefix(data, []byte(fileMagic))
	if !ok {
		return "", nil, fmt.Errorf("%w: %s is not a vault item: restore it from a backup or delete it", ErrCorrupt, filepath.Join(s.dir, name))
	}
	k, value, ok := bytes.Cut(rest, []byte{'\n'})
	key = string(k)
	if !ok || checkKey(key) != nil || itemName(key) != name {
		return "", nil, fmt.Errorf("%w: %s has a bad header: restore it from a backup or delete it", ErrCorrupt, filepath.Join(s.dir, name))
	}
	return key, value, nil
}

func itemName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:]) + itemSuffix
}

func isItemName(name string) bool {
	if len(name) != itemNameLen || !strings.HasSuffix(name, itemSuffix) {
		return false
	}
	for _, c := range name[:2*sha256.Size] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
