package vault_test

import (
	"bytes"
	"context"
	"fmt"
	"log"

	"github.com/presence-mps/presence/vault"
)

func ExampleSetLarge() {
	ctx := context.Background()
	s := vault.NewMemory(vault.ItemLimit)
	bundle := bytes.Repeat([]byte("-----PEM-----\n"), 1000) // 14,000 bytes: more than one item holds
	if err := vault.SetLarge(ctx, s, "tls/bundle.pem", bundle); err != nil {
		log.Fatal(err)
	}
	got, err := vault.GetLarge(ctx, s, "tls/bundle.pem")
	if err != nil {
		log.Fatal(err)
	}
	keys, err := s.List(ctx, "tls/")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(bytes.Equal(got, bundle), len(keys), "items")
	// Output:
	// true 7 items
}

func ExampleMigrate() {
	ctx := context.Background()
	from, to := vault.NewMemory(0), vault.NewMemory(0)
	accounts := vault.NewAccounts(from)
	for _, name := range []string{"alice", "bob"} {
		if err := accounts.Add(ctx, vault.KindConsole, name, vault.Secret("pw-of-"+name)); err != nil {
			log.Fatal(err)
		}
	}
	res, err := vault.Migrate(ctx, from, to, vault.MigrateOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", res)
	names, err := vault.NewAccounts(to).List(ctx, vault.KindConsole)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(names)
	// Output:
	// {Copied:2 Replaced:0 Unchanged:0 Missing:0}
	// [alice bob]
}
