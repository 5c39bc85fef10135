package adapter_test

import (
	"slices"
	"testing"
)

// AMT accounts bound in the window are the vault's bindings.
func TestAdminAMTBindings(t *testing.T) {
	f := newFixture(t)
	const g = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	if err := f.admin.AddAMTAccount("home", "Home-P@ss2", []string{"AAAAAAAABBBBCCCCDDDDEEEEEEEEEEEE"}); err != nil {
		t.Fatal(err)
	}
	if devs, err := f.admin.AMTDevices("home"); err != nil || !slices.Equal(devs, []string{g}) {
		t.Fatalf("AMTDevices = %v, %v", devs, err)
	}
	if err := f.admin.AddAMTAccount("other", "Other-P@ss3", []string{g}); err == nil {
		t.Fatal("a device bound to two accounts")
	}
	if err := f.admin.AddAMTAccount("home", "Home-P@ss2", nil); err != nil {
		t.Fatal(err)
	}
	if devs, err := f.admin.AMTDevices("home"); err != nil || len(devs) != 0 {
		t.Fatalf("after unbinding: %v, %v", devs, err)
	}
}
