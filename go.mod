module github.com/presence-mps/presence

go 1.26.0

toolchain go1.27.3

require (
	github.com/godbus/dbus/v5 v5.2.2
	github.com/grandcat/zeroconf v1.0.0
	github.com/miekg/dns v1.1.27
	github.com/zalando/go-keyring v0.2.8
	go.etcd.io/bbolt v1.5.0
	golang.org/x/crypto v0.58.0
	golang.org/x/net v0.62.0
	golang.org/x/sys v0.49.0
)

require (
	github.com/cenkalti/backoff v2.2.1+incompatible // indirect
	github.com/danieljoos/wincred v1.2.3 // indirect
)
