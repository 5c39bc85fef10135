package vault

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Memory is a [Store] that keeps values in memory. It is safe for concurrent
// use. Use [NewMemory]; the zero value is not usable.
type Memory struct {
	limit int

	mu sync.RWMutex
	m  map[string][]byte // guarded by mu
}

// NewMemory returns an empty memory store that rejects values over maxItem
// bytes with [ErrTooLarge]. A maxItem of 0 or less means [ItemLimit].
func NewMemory(maxItem int) *Memory {
	if maxItem <= 0 {
		maxItem = ItemLimit
	}
	return &Memory{limit: maxItem, m: make(map[string][]byte)}
}

var _ Store = (*Memory)(nil)

// Get implements [Store].
func (s *Memory) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkCall(ctx, key); err != nil {
		return nil, err
	}
	s.mu.RLock()
	v, ok := s.m[key]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	return bytes.Clone(v), nil
}

// Set implements [Store].
func (s *Memory) Set(ctx context.Context, key string, value []byte) error {
	if err := checkSet(ctx, key, value, s.limit); err != nil {
		return err
	}
	v := append(make([]byte, 0, len(value)), value...)
	s.mu.Lock()
	s.m[key] = v
	s.mu.Unlock()
	return nil
}

// Delete implements [Store].
func (s *Memory) Delete(ctx context.Context, key string) error {
	if err := checkCall(ctx, key); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; !ok {
		return fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	delete(s.m, key)
	return nil
}

// List implements [Store].
func (s *Memory) List(ctx context.Context, prefix string) ([]string, error) {
	if err := checkList(ctx, prefix); err != nil {
		return nil, err
	}
	var keys []string
	s.mu.RLock()
	for k := range s.m {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	s.mu.RUnlock()
	slices.Sort(keys)
	return keys, nil
}
