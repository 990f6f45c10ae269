package main

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
)

// TestDemoInstructionsWork runs what `serve --demo` prints, as printed: the
// page's URL answers, the submit command shows the Location it says to
// follow, and the poll command with that id answers the job.
func TestDemoInstructionsWork(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is missing: the printed commands are curl commands")
	}
	p := startProc(t, "serve", "--demo", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--concurrency", "1")
	defer p.stop(t)
	page := regexp.MustCompile(`(?m)^Open the page: (http://\S+/) `)
	testkit.Eventually(t, 60*time.Second, func() (bool, string) { return page.MatchString(p.logText()), p.logText() })
	out := p.logText()
	pageURL := page.FindStringSubmatch(out)[1]
	res, err := http.Get(pageURL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Errorf("the page %s: %d %s", pageURL, res.StatusCode, res.Header.Get("Content-Type"))
	}
	submit := regexp.MustCompile(`(?m)^  (curl -si \S+/v1/jobs .*)$`).FindStringSubmatch(out)
	poll := regexp.MustCompile(`(?m)^  (curl -s \S+/v1/jobs/<id>)$`).FindStringSubmatch(out)
	if submit == nil || poll == nil {
		t.Fatalf("no submit or poll command in:\n%s", out)
	}
	answer, err := exec.Command("/bin/sh", "-c", submit[1]).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", submit[1], err, answer)
	}
	loc := regexp.MustCompile(`(?mi)^Location: /v1/jobs/(\S+)\r?$`).FindSubmatch(answer)
	if loc == nil {
		t.Fatalf("the submit's answer shows no Location:\n%s", answer)
	}
	cmd := strings.Replace(poll[1], "<id>", string(loc[1]), 1)
	testkit.Eventually(t, 120*time.Second, func() (bool, string) {
		b, err := exec.Command("/bin/sh", "-c", cmd).Output()
		var job struct{ Status string }
		if err != nil || json.Unmarshal(b, &job) != nil {
			return false, cmd + ": " + string(b)
		}
		return job.Status == "succeeded", cmd + ": " + string(b)
	})
}
