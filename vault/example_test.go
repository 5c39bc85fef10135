package vault_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/presence-mps/presence/vault"
)

func ExampleSecret() {
	pw := vault.Secret("correct horse battery staple")
	fmt.Printf("%v %q %x\n", pw, pw, pw)
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	logger.Info("account added", "user", "admin", "password", pw)
	fmt.Println(len(pw.Reveal()))
	// Output:
	// REDACTED "REDACTED" REDACTED
	// level=INFO msg="account added" user=admin password=REDACTED
	// 28
}

func ExampleAccounts() {
	ctx := context.Background()
	accounts := vault.NewAccounts(vault.NewMemory(vault.ItemLimit))
	if err := accounts.Add(ctx, vault.KindCIRA, "branch-office", "Amt-Cira-1"); err != nil {
		log.Fatal(err)
	}
	auth := accounts.CIRAAuthenticator()
	ok, err := auth(ctx, "branch-office", []byte("Amt-Cira-1"))
	fmt.Println(ok, err)
	ok, err = auth(ctx, "branch-office", []byte("guess"))
	fmt.Println(ok, err)
	// Output:
	// true <nil>
	// false <nil>
}

func ExampleLoadCA() {
	ctx := context.Background()
	store, err := vault.Open("file", os.Getenv("PRESENCE_DATA_DIR"))
	if err != nil {
		log.Fatal(err)
	}
	ca, err := vault.LoadCA(ctx, store)
	if err != nil {
		// Only an explicit `presence cert init` creates a CA: devices trust its root.
		log.Fatal(err)
	}
	fmt.Print(ca.Info())
	ln, err := tls.Listen("tcp", ":4433", &tls.Config{
		Certificates: []tls.Certificate{ca.TLSCertificate()},
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
}
