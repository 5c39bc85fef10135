package admin

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/presence-mps/presence/mps/history"
	"github.com/presence-mps/presence/vault"
)

func TestSentence(t *testing.T) {
	const act = "The account could not be added"
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("get: %w", vault.ErrLocked), act + ". The keychain is locked: unlock it and try again."},
		{vault.ErrUnavailable, act + ". The keychain cannot be used on this machine: log in to a desktop session, or move the secrets to the file vault (presence vault migrate), and try again."},
		{fmt.Errorf("x: %w", errors.Join(vault.ErrUnavailable, context.DeadlineExceeded)), act + ". The keychain did not answer in time (it may be waiting for an unlock prompt): answer it and try again."},
		{history.ErrClosed, act + ". The history file is closed because Presence is stopping."},
		{fmt.Errorf("open: %w", history.ErrLocked), act + ". Another Presence is using the history file: stop it and try again."},
		{errors.New("vault: invalid account name \"a b\""), act + `. Invalid account name "a b".`},
		{errors.New("adapter: this Presence keeps no history"), act + ". This Presence keeps no history."},
		{errors.New("it ended already."), act + ". It ended already."},
		{nil, act + "."},
	} {
		if got := Sentence(act, tc.err); got != tc.want {
			t.Errorf("Sentence(%v) = %q; want %q", tc.err, got, tc.want)
		}
	}
}
