//go:build linux

package main

import (
	"fmt"
	"sort"
	"strings"
)

// table is one block of the report, rendered as aligned text for the
// terminal and as Markdown for the README or a note.
type table struct {
	title  string
	header []string
	rows   [][]string
	notes  []string
}

func (t table) text() string {
	var b strings.Builder
	b.WriteString(t.title + "\n")
	width := make([]int, len(t.header))
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			if n := len([]rune(c)); i < len(width) && n > width[i] {
				width[i] = n
			}
		}
	}
	line := func(r []string) {
		for i, c := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := width[i] - len([]rune(c))
			if i == len(r)-1 {
				pad = 0
			}
			b.WriteString(c + strings.Repeat(" ", pad))
		}
		b.WriteString("\n")
	}
	line(t.header)
	for _, r := range t.rows {
		line(r)
	}
	for _, n := range t.notes {
		b.WriteString("  " + n + "\n")
	}
	return b.String()
}

func (t table) markdown() string {
	var b strings.Builder
	b.WriteString("**" + t.title + "**\n\n")
	b.WriteString("| " + strings.Join(t.header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat("---|", len(t.header)) + "\n")
	for _, r := range t.rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = strings.ReplaceAll(c, "|", "\\|")
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	if len(t.notes) > 0 {
		b.WriteString("\n")
		for _, n := range t.notes {
			b.WriteString("- " + n + "\n")
		}
	}
	return b.String()
}

// median of xs (the mean of the middle two for an even count); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// summary is the medians of one case and target over the rounds.
type summary struct {
	RPS, P50, P99  float64
	Runs           int
	Non2xxPct      float64 // over all rounds
	SockErrPct     float64
	FailedRuns     int
	LastRunFailure string
}

func summarize(samples []sample, failures []string) summary {
	var rps, p50, p99 []float64
	var req, non2xx, sockErr int64
	for _, s := range samples {
		rps = append(rps, s.RPS)
		p50 = append(p50, s.P50)
		p99 = append(p99, s.P99)
		req += s.Requests
		non2xx += s.Non2xx
		sockErr += s.SockErr
	}
	sum := summary{RPS: median(rps), P50: median(p50), P99: median(p99), Runs: len(samples), FailedRuns: len(failures)}
	if req > 0 {
		sum.Non2xxPct = 100 * float64(non2xx) / float64(req)
		sum.SockErrPct = 100 * float64(sockErr) / float64(req)
	}
	if len(failures) > 0 {
		sum.LastRunFailure = failures[len(failures)-1]
	}
	return sum
}

// ratio formats a/b as "0.93×", or "—" when either is missing.
func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func fmtRPS(x float64) string {
	if x <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f", x)
}

func fmtMS(x float64) string {
	if x <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.3f", x)
}

func fmtMiB(b int64) string {
	if b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

func fmtSize(b int64) string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", b>>30)
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", b>>20)
	}
	return fmt.Sprintf("%d B", b)
}
