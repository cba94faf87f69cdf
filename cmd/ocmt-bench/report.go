package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Results is everything one run measured; with --json it is printed as is.
type Results struct {
	Host         HostInfo `json:"host"`
	Rows         []Row    `json:"rows"`
	TotalSeconds float64  `json:"totalSeconds"`
}

// HostInfo describes where the numbers come from.
type HostInfo struct {
	CPUs      int    `json:"cpus"`
	MemTotal  string `json:"memTotal"`
	Kernel    string `json:"kernel"`
	Engine    string `json:"dockerEngine"`
	GoVersion string `json:"goVersion"`
	Image     string `json:"image"`
}

// Row is one line of the table. Pass is nil for informational rows.
type Row struct {
	Metric string             `json:"metric"`
	Value  string             `json:"value"`
	Target string             `json:"target,omitempty"`
	Pass   *bool              `json:"pass,omitempty"`
	Number float64            `json:"number,omitempty"` // the row's headline number, where it has one
	Stats  *Summary           `json:"stats,omitempty"`  // milliseconds
	Phases map[string]Summary `json:"phases,omitempty"` // milliseconds
}

func (r *Results) add(row Row) { r.Rows = append(r.Rows, row) }

// Summary of a sample, in milliseconds. Percentiles are nearest-rank.
type Summary struct {
	N       int       `json:"n"`
	Mean    float64   `json:"mean"`
	P50     float64   `json:"p50"`
	P95     float64   `json:"p95"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	Samples []float64 `json:"samples"`
}

func summarize(ds []time.Duration) Summary {
	s := Summary{N: len(ds)}
	if len(ds) == 0 {
		return s
	}
	for _, d := range ds {
		s.Samples = append(s.Samples, round2(float64(d.Microseconds())/1000))
	}
	sorted := slices.Clone(s.Samples)
	slices.Sort(sorted)
	var sum float64
	for _, v := range sorted {
		sum += v
	}
	s.Mean = round2(sum / float64(len(sorted)))
	s.P50 = percentile(sorted, 50)
	s.P95 = percentile(sorted, 95)
	s.Min, s.Max = sorted[0], sorted[len(sorted)-1]
	return s
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[max(0, min(len(sorted)-1, rank-1))]
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// fmtMS formats milliseconds: "412 ms", "8.4 ms", "2.31 s".
func fmtMS(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	default:
		return fmt.Sprintf("%.1f ms", v)
	}
}

func ms(d time.Duration) string { return fmtMS(float64(d.Microseconds()) / 1000) }

func writeTable(w io.Writer, r *Results) {
	h := r.Host
	fmt.Fprintf(w, "ocmt-bench — %d CPUs, %s RAM, kernel %s, Docker %s, %s, image %s\n\n",
		h.CPUs, h.MemTotal, h.Kernel, h.Engine, h.GoVersion, h.Image)
	fmt.Fprintln(w, "| Metric | Value | Target | Result |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, row := range r.Rows {
		target, result := row.Target, "info"
		if target == "" {
			target = "—"
		}
		if row.Pass != nil {
			result = "FAIL"
			if *row.Pass {
				result = "PASS"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", esc(row.Metric), esc(row.Value), esc(target), result)
	}
	fmt.Fprintf(w, "\nTotal bench runtime: %s\n", (time.Duration(r.TotalSeconds * float64(time.Second))).Round(time.Second))
}

func esc(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func writeJSON(w io.Writer, r *Results) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func hostInfo() HostInfo {
	h := HostInfo{CPUs: goruntime.NumCPU(), GoVersion: goruntime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if v, err := meminfo("MemTotal"); err == nil {
		h.MemTotal = fmt.Sprintf("%.1f GiB", float64(v)/(1<<30))
	}
	return h
}

// memAvailable is MemAvailable from /proc/meminfo, in bytes.
func memAvailable() (int64, error) { return meminfo("MemAvailable") }

func meminfo(key string) (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("host memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != key {
			continue
		}
		fields := strings.Fields(rest) // "12345 kB"
		if len(fields) == 0 {
			break
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			break
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("host memory: no %s in /proc/meminfo", key)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
