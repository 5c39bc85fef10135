module github.com/presence-mps/presence

go 1.26

toolchain go1.27.3
