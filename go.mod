module github.com/presence-mps/presence

go 1.26.0

toolchain go1.27.3

require golang.org/x/net v0.62.0
