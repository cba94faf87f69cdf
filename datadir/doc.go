// Package datadir keeps one ocmt process per data directory. `ocmt serve`
// (every role that opens the database, that is all but --role=vault) takes
// an exclusive flock(2) on <data dir>/ocmt.lock before it opens the store
// or touches a container, and holds it until it exits; the kernel releases
// it when the process dies, however it dies. A second serve on the same
// directory gets an *InUseError naming the holder (ocmt issue 9: without
// the lock it recreated the first one's containers pointing at its own
// relay port).
//
// The file also records the holder's pid and listen address, for the
// error message and for tools that want to know who holds the directory
// (Holder). That content is informational only: the lock is the truth, so
// a file left by a crashed process blocks nobody.
package datadir
