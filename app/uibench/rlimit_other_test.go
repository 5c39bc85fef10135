//go:build !unix

package uibench

// raiseOpenFiles returns 0: the limit on open files is unknown here.
func raiseOpenFiles() uint64 { return 0 }
