package loader

import (
	"errors"
	"strings"
	"testing"
)

func TestParseURLInWords(t *testing.T) {
	for _, tc := range []struct{ raw, says string }{
		{"", "the URL is empty"},
		{"example.org/data.tab", `"example.org/data.tab" has no scheme; write the URL in full, starting with https:// or http:// (e.g. https://example.org/data.tab)`},
		{"example.org:8080/data.tab", "has no scheme"},
		{"localhost:8080", "has no scheme"},
		{"//example.org/data.tab", "has no scheme"},
		{"ftp://example.org/data.tab", `uses the scheme "ftp"; only http and https URLs can be fetched`},
		{"mailto:someone@example.org", `uses the scheme "mailto"`},
		{"file:///etc/passwd", `uses the scheme "file"`},
		{"http:///data.tab", "has no host"},
		{"https://user:secret@example.org/d.tab", "user name or password"},
		{"https://exa mple.org/d", "is not a valid URL"},
	} {
		_, err := ParseURL(tc.raw)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("ParseURL(%q) = %v, want it to say %q", tc.raw, err, tc.says)
			continue
		}
		if !errors.Is(err, ErrForbiddenAddress) || strings.HasPrefix(err.Error(), ErrForbiddenAddress.Error()) || strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseURL(%q) = %v", tc.raw, err)
		}
	}
	if _, err := ParseURL("https://example.org/data.tab?x=1"); err != nil {
		t.Error(err)
	}
}

func TestAddressRefusalNamesTheFlag(t *testing.T) {
	l := newTestLoader(t, func(c *Config) { c.AllowPrivateNetworks = false })
	err := l.ValidateURL(ctxT(t), "http://127.0.0.1:9/data.tab")
	if err == nil || !strings.Contains(err.Error(), "--allow-private-networks") || !strings.Contains(err.Error(), EnvAllowPrivateNetworks+"=true") {
		t.Errorf("refusal: %v", err)
	}
}

func TestReasonDropsTheSentinel(t *testing.T) {
	_, err := newTestLoader(t, nil).FetchTable(ctxT(t), "https://example.org/d.tab", TableOptions{ImageURLTemplate: "x", ImageURLColumn: "u"})
	if !errors.Is(err, ErrDatasetInvalid) || strings.HasPrefix(Reason(err), "dataset invalid") || !strings.Contains(Reason(err), "not both") {
		t.Errorf("err %v, reason %q", err, Reason(err))
	}
}
