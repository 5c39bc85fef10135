package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxLargeLen is the largest value, in bytes, that [SetLarge] stores: 410
// items of [ItemLimit] bytes.
const MaxLargeLen = 1 << 20

// Large values: the header item at the key itself holds largeMagic and one
// line "GEN LEN CHUNKS SHA256", where GEN is 16 lowercase hex digits chosen
// at random by each SetLarge, LEN the value length, CHUNKS the number of
// chunk items and SHA256 the hex SHA-256 of the value. Chunk i is the item
// KEY/GEN/i and holds bytes [i*ItemLimit, (i+1)*ItemLimit).
const (
	largeMagic  = "presence-large 1\n"
	largeGenLen = 16
	// largeKeyRoom is what the chunk keys add to a key: "/", the
	// generation, "/" and up to three digits.
	largeKeyRoom = 1 + largeGenLen + 1 + 3
	maxChunks    = (MaxLargeLen + ItemLimit - 1) / ItemLimit
)

// SetLarge stores value, of up to [MaxLargeLen] bytes, in s under key, split
// into items of at most [ItemLimit] bytes, so that values larger than
// one item (a PEM bundle, say) fit every store, the OS keychain included.
// Read it with [GetLarge] and remove it with [DeleteLarge]; key holds a
// header, the parts live under key+"/", so List shows them all.
//
// The replacement is atomic as far as readers of the header can tell: the
// parts of the new value go to new items, the header is written last, and
// only then are the parts of the old value deleted. An interrupted SetLarge
// leaves the old value readable (and some unused parts, which DeleteLarge
// removes). Concurrent SetLarge calls for the same key may leave unused
// parts behind but never a damaged value.
//
// key must leave room for the part names: at most [MaxKeyLen]-21 bytes.
func SetLarge(ctx context.Context, s Store, key string, value []byte) error {
	if err := checkLargeKey(key); err != nil {
		return err
	}
	if len(value) > MaxLargeLen {
		return fmt.Errorf("%w: %d bytes for %q, the limit of a large value is %d", ErrTooLarge, len(value), key, MaxLargeLen)
	}
	var old string
	switch prev, err := s.Get(ctx, key); {
	case err == nil:
		if h, herr := parseLargeHeader(key, prev); herr == nil {
			old = h.gen
		}
	case !errors.Is(err, ErrNotFound):
		return err
	}
	var g [largeGenLen / 2]byte
	rand.Read(g[:]) // never fails
	h := largeHeader{gen: hex.EncodeToString(g[:]), length: len(value), sum: sha256.Sum256(value)}
	h.chunks = (len(value) + ItemLimit - 1) / ItemLimit
	for i := range h.chunks {
		part := value[i*ItemLimit : min((i+1)*ItemLimit, len(value))]
		if err := s.Set(ctx, chunkKey(key, h.gen, i), part); err != nil {
			return errors.Join(err, deleteChunks(context.WithoutCancel(ctx), s, key, h.gen))
		}
	}
	if err := s.Set(ctx, key, h.encode()); err != nil {
		return errors.Join(err, deleteChunks(context.WithoutCancel(ctx), s, key, h.gen))
	}
	if old != "" && old != h.gen {
		if err := deleteChunks(ctx, s, key, old); err != nil {
			return fmt.Errorf("vault: %q was stored, but the parts of its old value remain: %w", key, err)
		}
	}
	return nil
}

// GetLarge returns the value [SetLarge] stored under key. It returns an
// error wrapping [ErrNotFound] if there is none, and [ErrCorrupt] if a part
// is missing or the value does not match the length and SHA-256 of its
// header.
func GetLarge(ctx context.Context, s Store, key string) ([]byte, error) {
	if err := checkLargeKey(key); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		raw, err := s.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		h, err := parseLargeHeader(key, raw)
		if err != nil {
			return nil, err
		}
		value, err := h.read(ctx, s, key)
		if errors.Is(err, ErrNotFound) && attempt < 2 {
			// A concurrent SetLarge may have replaced the value and deleted
			// the parts we were reading: try the new header.
			if now, gerr := s.Get(ctx, key); gerr == nil && !bytes.Equal(now, raw) {
				continue
			}
		}
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: a part of the large value %q is missing: %v", ErrCorrupt, key, err)
		}
		return value, err
	}
}

// DeleteLarge removes the value [SetLarge] stored under key, header first,
// and every part of it, including parts that interrupted SetLarge calls
// left behind. It returns an error wrapping [ErrNotFound] if there was no
// header.
func DeleteLarge(ctx context.Context, s Store, key string) error {
	if err := checkLargeKey(key); err != nil {
		return err
	}
	herr := s.Delete(ctx, key)
	if herr != nil && !errors.Is(herr, ErrNotFound) {
		return herr
	}
	if err := deleteChunks(ctx, s, key, ""); err != nil {
		return err
	}
	return herr
}

type largeHeader struct {
	gen            string
	length, chunks int
	sum            [sha256.Size]byte
}

func (h largeHeader) encode() []byte {
	return fmt.Appendf(nil, "%s%s %d %d %x\n", largeMagic, h.gen, h.length, h.chunks, h.sum)
}

func parseLargeHeader(key string, raw []byte) (largeHeader, error) {
	bad := func(why string) (largeHeader, error) {
		return largeHeader{}, fmt.Errorf("%w: %q is not the header of a large value (%s)", ErrCorrupt, key, why)
	}
	line, ok := bytes.CutPrefix(raw, []byte(largeMagic))
	if !ok {
		return bad("no header line")
	}
	line, ok = bytes.CutSuffix(line, []byte("\n"))
	f := strings.Split(string(line), " ")
	if !ok || len(f) != 4 {
		return bad("want four fields")
	}
	var h largeHeader
	h.gen = f[0]
	if !isGen(h.gen) {
		return bad("bad generation")
	}
	var err error
	if h.length, err = strconv.Atoi(f[1]); err != nil || h.length < 0 || h.length > MaxLargeLen {
		return bad("bad length")
	}
	if h.chunks, err = strconv.Atoi(f[2]); err != nil || h.chunks != (h.length+ItemLimit-1)/ItemLimit {
		return bad("bad part count")
	}
	if n, err := hex.Decode(h.sum[:], []byte(f[3])); err != nil || n != sha256.Size || len(f[3]) != 2*sha256.Size {
		return bad("bad SHA-256")
	}
	return h, nil
}

// read reads and checks the parts h describes.
func (h largeHeader) read(ctx context.Context, s Store, key string) ([]byte, error) {
	value := make([]byte, 0, h.length) // h.length ≤ MaxLargeLen
	for i := range h.chunks {
		part, err := s.Get(ctx, chunkKey(key, h.gen, i))
		if err != nil {
			return nil, err
		}
		want := min(ItemLimit, h.length-len(value))
		if len(part) != want {
			return nil, fmt.Errorf("%w: part %d of the large value %q is %d bytes, not %d", ErrCorrupt, i, key, len(part), want)
		}
		value = append(value, part...)
	}
	if sha256.Sum256(value) != h.sum {
		return nil, fmt.Errorf("%w: the large value %q does not match its SHA-256", ErrCorrupt, key)
	}
	return value, nil
}

// deleteChunks deletes the parts of generation gen of key, or of every
// generation if gen is "".
func deleteChunks(ctx context.Context, s Store, key, gen string) error {
	prefix := key + "/"
	if gen != "" {
		prefix += gen + "/"
	}
	keys, err := s.List(ctx, prefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range keys {
		if !isChunkKey(key, k) {
			continue // an item of its own that happens to share the prefix
		}
		if err := s.Delete(ctx, k); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func checkLargeKey(key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(key) > MaxKeyLen-largeKeyRoom {
		return fmt.Errorf("%w: a large value's key is at most %d bytes, and %q is %d", ErrInvalidKey, MaxKeyLen-largeKeyRoom, key, len(key))
	}
	return nil
}

func chunkKey(key, gen string, i int) string {
	return key + "/" + gen + "/" + strconv.Itoa(i)
}

// isChunkKey reports whether k names a part of a large value at key.
func isChunkKey(key, k string) bool {
	rest, ok := strings.CutPrefix(k, key+"/")
	if !ok {
		return false
	}
	gen, num, ok := strings.Cut(rest, "/")
	if !ok || !isGen(gen) {
		return false
	}
	i, err := strconv.Atoi(num)
	return err == nil && i >= 0 && i < maxChunks && num == strconv.Itoa(i)
}

func isGen(s string) bool {
	if len(s) != largeGenLen {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
