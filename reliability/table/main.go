// Command table prints the rows of a reliability report as one table.
//
//	go run ./reliability/table REPORT
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/userattrs/userattrs/reliability"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: table REPORT")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	var rows []reliability.Row
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r reliability.Row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		rows = append(rows, r)
	}
	fmt.Print(reliability.Format(rows))
}
