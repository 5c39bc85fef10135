// Package uibench measures how the desktop window keeps up with a large
// fleet. It holds no code, only tests and benchmarks: a real instance runs
// in the test process, as in the desktop app, and simulated AMT devices
// (mps/amtsim) in copies of the test binary connect to it over TLS on
// loopback, while the benchmark does what app.show does on each UI tick:
// read a snapshot off the Fyne goroutine (adapter.Backend.Snapshot), apply
// it on the Fyne goroutine (ui.UI.Apply), and, in some variants, paint the
// window with the software painter of Fyne's headless test driver.
//
// Every tunnel costs an open file in the server and one in the simulator,
// so 10,000 devices do not fit in one process under a limit of 20,000 open
// files; the fleet is split over child processes of at most 2,500 devices.
// They get the server's address, root certificate and CIRA password on
// standard input (never argv), and stop when it closes.
//
// The benchmarks run only with -bench:
//
//	go test -run '^$' -bench FrameWhileConnecting -benchtime 1x -count 3 ./app/uibench/
//	go test -run '^$' -bench FrameConnected -benchtime 50x ./app/uibench/
//	go test -run '^$' -bench ClickPower ./app/uibench/
//
// BenchmarkClickPower runs one simulated device in this process instead,
// to read its call record: the time from a click on a power action in the
// device pane to the device accepting it.
//
// Plain go test runs a small test of the harness itself: 200 devices from
// one child process, and the window's device table must list them all.
package uibench
