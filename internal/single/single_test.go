package single

import (
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestAcquire(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A second holder in the same process is refused too (flock is per
	// open file description).
	if _, err := Acquire(dir); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Acquire: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(dir)
	if err != nil {
		t.Fatalf("after Release: %v", err)
	}
	l2.Release()
}

// A process killed with SIGKILL leaves no lock behind, and while it lives,
// another process is refused at once.
func TestAcquireAcrossProcesses(t *testing.T) {
	if os.Getenv("SINGLE_HOLD_DIR") != "" {
		if _, err := Acquire(os.Getenv("SINGLE_HOLD_DIR")); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("held\n")
		time.Sleep(time.Minute)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestAcquireAcrossProcesses$")
	cmd.Env = append(os.Environ(), "SINGLE_HOLD_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	buf := make([]byte, 5)
	if _, err := out.Read(buf); err != nil || string(buf) != "held\n" {
		t.Fatalf("child: %q %v", buf, err)
	}
	start := time.Now()
	if _, err := Acquire(dir); !errors.Is(err, ErrRunning) {
		t.Fatalf("while the child holds it: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("refusal took %v", d)
	}
	cmd.Process.Kill()
	cmd.Wait()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("after kill -9: %v", err)
	}
	l.Release()
}
