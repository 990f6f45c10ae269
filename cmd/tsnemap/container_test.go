package main

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
)

// dockerfile is what a test needs of Dockerfile.cuda's run stage: its
// environment, its command and its health check.
type dockerfile struct {
	env         map[string]string
	cmd         []string
	healthcheck string
}

func readDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Join continued lines, then take the last stage's instructions.
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	d := dockerfile{env: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "FROM "):
			d = dockerfile{env: map[string]string{}}
		case strings.HasPrefix(line, "ENV "):
			for _, kv := range strings.Fields(strings.TrimPrefix(line, "ENV ")) {
				k, v, _ := strings.Cut(kv, "=")
				d.env[k] = v
			}
		case strings.HasPrefix(line, "HEALTHCHECK "):
			_, d.healthcheck, _ = strings.Cut(line, " CMD ")
		case strings.HasPrefix(line, "ENTRYPOINT ") || strings.HasPrefix(line, "CMD "):
			for _, m := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(line, -1) {
				if !strings.HasPrefix(line, "ENTRYPOINT") || m[1] != "tsnemap" {
					d.cmd = append(d.cmd, m[1])
				}
			}
		}
	}
	return d
}

// TestContainerSettings starts the binary as Dockerfile.cuda's image does
// (its environment, its command; no Docker engine here), with the keys
// file where the image expects it mounted and the data volume in a
// temporary directory: it listens on every address, needs the keys, and
// the image's health check passes. Without the keys file, or with keys
// turned off, it stops at start-up and says what to do.
func TestContainerSettings(t *testing.T) {
	d := readDockerfile(t, "../../Dockerfile.cuda")
	if d.env["TSNEMAP_ADDR"] != "0.0.0.0:8080" || d.env["TSNEMAP_API_KEYS_FILE"] != "/run/secrets/tsnemap_api_keys" ||
		strings.Join(d.cmd, " ") != "serve" || d.healthcheck == "" {
		t.Fatalf("Dockerfile.cuda: env %v, cmd %v, health check %q", d.env, d.cmd, d.healthcheck)
	}
	bin := tsnemapBinary(t)
	_, port, _ := net.SplitHostPort(freeAddr(t))
	keys := filepath.Join(t.TempDir(), "tsnemap_api_keys") // as mounted
	if err := os.WriteFile(keys, []byte("me:0123456789abcdef0123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := func(edit map[string]string) []string {
		e := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		for k, v := range d.env {
			if w, ok := edit[k]; ok {
				v = w
			}
			e = append(e, k+"="+v)
		}
		return e
	}
	settings := map[string]string{"TSNEMAP_ADDR": "0.0.0.0:" + port, "TSNEMAP_DATA_DIR": t.TempDir(), "TSNEMAP_API_KEYS_FILE": keys}

	t.Run("refusals", func(t *testing.T) {
		for name, tc := range map[string]struct {
			keysFile string
			code     int
			says     []string
		}{
			"no keys file mounted": {"/nonexistent/tsnemap_api_keys", 1, []string{"TSNEMAP_API_KEYS_FILE", "/nonexistent/tsnemap_api_keys", "mount"}},
			"keys turned off":      {"", 2, []string{"--api-keys-file", "--insecure-listen-any", "TSNEMAP_INSECURE_LISTEN_ANY"}},
		} {
			cmd := exec.Command(bin, d.cmd...)
			cmd.Env = env(map[string]string{"TSNEMAP_ADDR": settings["TSNEMAP_ADDR"], "TSNEMAP_DATA_DIR": t.TempDir(), "TSNEMAP_API_KEYS_FILE": tc.keysFile})
			out, err := cmd.CombinedOutput()
			if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != tc.code {
				t.Errorf("%s: exit %v, want %d\n%s", name, err, tc.code, out)
			}
			for _, want := range tc.says {
				if !strings.Contains(string(out), want) {
					t.Errorf("%s: the message does not say %q:\n%s", name, want, out)
				}
			}
		}
	})

	p := &proc{}
	p.cmd = exec.Command(bin, d.cmd...)
	p.cmd.Env = env(settings)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.stop(t)
	testkit.Eventually(t, 60*time.Second, func() (bool, string) {
		return strings.Contains(p.logText(), "tsnemap serving"), p.logText()
	})
	if !regexp.MustCompile(`url=http://(0\.0\.0\.0|\[::\]):` + port).MatchString(p.logText()) {
		t.Errorf("not listening on every address:\n%s", p.logText())
	}
	base := "http://127.0.0.1:" + port
	for key, want := range map[string]int{"": 401, "0123456789abcdef0123": 200} {
		req, _ := http.NewRequest("GET", base+"/v1/jobs", nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("GET /v1/jobs with key %q: %d, want %d", key, res.StatusCode, want)
		}
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Log("curl is missing: the image's health check (which runs curl) is not run")
		return
	}
	hc := exec.Command("/bin/sh", "-c", d.healthcheck) // Docker runs a string CMD with sh -c
	hc.Env = env(settings)
	if out, err := hc.CombinedOutput(); err != nil {
		t.Errorf("health check %q: %v\n%s", d.healthcheck, err, out)
	}
}
