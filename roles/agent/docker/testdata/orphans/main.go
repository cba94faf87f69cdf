// Command orphans is a test helper for TestContainerReapsOrphans: it is
// copied into a user container's /data and run there with docker exec.
//
//	orphans make N   start N children ("orphans child") and exit at once, so
//	                 that they are re-parented to the container's PID 1;
//	                 each child exits 300 ms later and stays a zombie unless
//	                 PID 1 reaps it
//	orphans count    print "zombies=<n> pid1=<comm of PID 1>" from /proc
//
// It is static (CGO_ENABLED=0): the agent image has nothing but ocmt.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: orphans make N | child | count")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "make":
		n, err := strconv.Atoi(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for range n {
			cmd := exec.Command(os.Args[0], "child") // stdio: /dev/null
			cmd.Env = []string{"GOMAXPROCS=1"}
			if err := cmd.Start(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		fmt.Println("started", n)
		// Exit without waiting: the children become orphans.
	case "child":
		time.Sleep(300 * time.Millisecond)
	case "count":
		zombies := 0
		dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
		for _, d := range dirs {
			b, err := os.ReadFile(d)
			if err != nil {
				continue
			}
			// pid (comm) state ...; comm may contain spaces and parentheses.
			s := string(b)
			if i := strings.LastIndexByte(s, ')'); i > 0 && i+2 < len(s) && s[i+2] == 'Z' {
				zombies++
			}
		}
		comm, _ := os.ReadFile("/proc/1/comm")
		fmt.Printf("zombies=%d pid1=%s\n", zombies, strings.TrimSpace(string(comm)))
	default:
		os.Exit(2)
	}
}
