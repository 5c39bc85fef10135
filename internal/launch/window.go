package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/presence-mps/presence/internal/logring"
	"github.com/presence-mps/presence/internal/settings"
	"github.com/presence-mps/presence/vault"
)

// Window is what the desktop window gets from `presence`: the server to
// start, and the first run when the data dir has no certificate yet.
type Window struct {
	// Setup, if not nil, must be done first: it creates the certificate
	// authority for address and the CIRA account (see [Setup]), or Join
	// (set with it) makes the data dir an instance of an existing fleet
	// from a join bundle (see [Join]).
	Setup func(address, user, password string) (FirstRun, error)
	Join  func(bundle io.Reader, passphrase, address string) (FirstRun, error)
	// Start starts the server (call it off the UI goroutine); it is
	// stopped, a start in progress included, when the window's function
	// returns.
	Start    func(context.Context) (*Running, error)
	CIRAPort int
	// Settings are those in force at start; SaveSettings keeps changed
	// ones in the data dir for the next start.
	Settings     settings.Settings
	SaveSettings func(settings.Settings) error
	// Log holds the latest log lines at LogLevel, which the window may
	// change while running.
	Log      *logring.Ring
	LogLevel *slog.LevelVar
	// Logger is the server's logger, for the window's own errors.
	Logger *slog.Logger
}

// LogLines is how many log lines the window keeps.
const LogLines = 5000

// FirstRun is what to enter in AMT after the first run.
type FirstRun struct {
	// Address is this instance's MPS address and Port its CIRA port: the
	// policy's first MPS entry. User is the CIRA account made (Setup), or
	// the first of the fleet's (Join).
	Address, User string
	Port          int
	RootSHA256    string
	RootPEM       string
	// Backup is the MPS entry (HOST:PORT) of the instance that invited
	// this one, the policy's second entry; "" when there is none (Setup,
	// or a bundle that does not name it).
	Backup string
	// Peer is the inviting instance's peer listener (HOST:PORT), which
	// the instance links to from its first start ("" when the bundle does
	// not name it: then mDNS or --peer finds the fleet).
	Peer string
	// Fleet is the id of the fleet joined ("" after Setup), and CIRAUsers
	// the CIRA accounts that came with it.
	Fleet     string
	CIRAUsers []string
}

// MinCIRAPassword is the shortest CIRA password the first run accepts.
const MinCIRAPassword = 8

// Setup is the first run of a data dir: it creates the certificate
// authority for address and the CIRA account user, and returns what to
// enter in AMT (cira is the CIRA port). It checks everything before
// writing anything; a root an earlier, interrupted setup made is kept
// rather than replaced.
func Setup(ctx context.Context, st vault.Store, acc *vault.Accounts, address, user, password string, cira int) (FirstRun, error) {
	if len(password) < MinCIRAPassword {
		return FirstRun{}, fmt.Errorf("the CIRA password needs at least %d characters", MinCIRAPassword)
	}
	if strings.TrimSpace(user) == "" {
		return FirstRun{}, errors.New("the CIRA user name is empty")
	}
	ca, err := vault.InitCA(ctx, st, vault.CAOptions{Address: address})
	if errors.Is(err, vault.ErrRootExists) {
		ca, err = vault.LoadCA(ctx, st)
	}
	if err != nil {
		return FirstRun{}, err
	}
	if err := acc.Add(ctx, vault.KindCIRA, user, vault.Secret(password)); err != nil {
		return FirstRun{}, err
	}
	return FirstRun{Address: address, User: user, Port: cira, RootSHA256: ca.RootFingerprintSHA256(), RootPEM: string(ca.RootPEM())}, nil
}
