package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/labstack/echo/v4"

	"github.com/tsnemap/tsnemap/loader"
	"github.com/tsnemap/tsnemap/openapi"
)

// newRouter finds operations of the spec for requests, whatever host they
// were sent to (the spec's servers list is an example, not a constraint).
func newRouter() (*openapi3.T, routers.Router, error) {
	doc, err := openapi.Load()
	if err != nil {
		return nil, nil, err
	}
	doc.Servers = nil
	r, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("route the spec: %w", err)
	}
	return doc, r, nil
}

// validateRequests checks each request against the spec before its handler
// runs, and turns every violation into a 400 naming the fields.
func (s *Server) validateRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		route, params, err := s.router.FindRoute(req)
		if err != nil {
			// Not in the spec: Echo answers 404/405 itself.
			return next(c)
		}
		if req.Method == http.MethodPost && req.ContentLength != 0 {
			ct := req.Header.Get(echo.HeaderContentType)
			if ct == "" || !strings.HasPrefix(strings.ToLower(ct), echo.MIMEApplicationJSON) {
				return newProblem(http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type",
					fmt.Sprintf("the request body must be JSON, sent with Content-Type: application/json (not %q)", ct))
			}
		}
		if req.Body != nil && req.Body != http.NoBody {
			// Read the body once here (the size limit applies), so the
			// validator and the handler both see it.
			body, err := io.ReadAll(req.Body)
			if err != nil {
				if errors.Is(err, echo.ErrStatusRequestEntityTooLarge) {
					return err
				}
				return fieldProblem(http.StatusBadRequest, "body", "could not be read: "+err.Error())
			}
			req.Body = io.NopCloser(bytes.NewReader(body))
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		}
		in := &openapi3filter.RequestValidationInput{
			Request:    req,
			PathParams: params,
			Route:      route,
			Options: &openapi3filter.Options{
				MultiError:         true,
				AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
				// Defaults are filled in by the handler (into the stored
				// request), not written into the body here.
				SkipSettingDefaults: true,
			},
		}
		if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
			if p := requestProblem(err); p != nil {
				return p
			}
			return err
		}
		return next(c)
	}
}

// requestProblem turns kin-openapi's validation errors into one problem
// with an entry per field. It returns nil for errors that are not about the
// request (which then count as the server's).
func requestProblem(err error) *problem {
	var fields []openapi.FieldProblem
	var walk func(error) bool
	walk = func(err error) bool {
		// Type switches, not errors.As: a RequestError unwraps to a
		// MultiError and a MultiError matches any of its members, so As
		// would find the wrong layer.
		switch e := err.(type) {
		case openapi3.MultiError:
			ok := false
			for _, x := range e {
				ok = walk(x) || ok
			}
			return ok
		case *openapi3filter.RequestError:
			prefix := ""
			if e.Parameter != nil {
				prefix = e.Parameter.Name
			}
			switch inner := e.Err.(type) {
			case openapi3.MultiError, *openapi3.SchemaError:
				fields = append(fields, collectSchemaErrors(inner, prefix)...)
				return true
			}
			msg := e.Reason
			if msg == "" && e.Err != nil {
				msg = e.Err.Error()
			}
			if e.RequestBody != nil && e.Err != nil && strings.Contains(e.Err.Error(), "failed to decode") {
				msg = "is not valid JSON: " + e.Err.Error()
			}
			fields = append(fields, openapi.FieldProblem{Field: orBody(prefix), Message: msg})
			return true
		case *openapi3.SchemaError:
			fields = append(fields, collectSchemaErrors(e, "")...)
			return true
		}
		var re *openapi3filter.RequestError
		if errors.As(err, &re) {
			return walk(re)
		}
		return false
	}
	if !walk(err) || len(fields) == 0 {
		return nil
	}
	sort.SliceStable(fields, func(i, j int) bool { return fields[i].Field < fields[j].Field })
	var parts []string
	for _, f := range fields {
		parts = append(parts, f.Field+": "+f.Message)
	}
	return newProblem(http.StatusBadRequest, "invalid-request", "Invalid request", strings.Join(parts, "; "), fields...)
}

func collectSchemaErrors(err error, prefix string) []openapi.FieldProblem {
	switch e := err.(type) {
	case openapi3.MultiError:
		var out []openapi.FieldProblem
		for _, x := range e {
			out = append(out, collectSchemaErrors(x, prefix)...)
		}
		return out
	case *openapi3.SchemaError:
		path := e.JSONPointer()
		msg := e.Reason
		// An unknown property is reported on its parent object; name the
		// property itself, since that is what the client has to fix.
		if name, ok := unsupportedProperty(e.Reason); ok {
			path = append(path, name)
			msg = "unknown field; check its spelling against the JobRequest schema"
		}
		field := strings.Join(path, ".")
		if prefix != "" {
			field = strings.Trim(prefix+"."+field, ".")
		}
		if e.SchemaField == "pattern" {
			if words, ok := patternInWords(field, e.Value); ok {
				msg = words
			}
		}
		return []openapi.FieldProblem{{Field: orBody(field), Message: msg}}
	}
	return []openapi.FieldProblem{{Field: orBody(prefix), Message: err.Error()}}
}

func orBody(f string) string {
	if f == "" {
		return "body"
	}
	return f
}

// unsupportedProperty extracts the name from kin-openapi's reason
// `property "x" is unsupported`.
func unsupportedProperty(reason string) (string, bool) {
	const pre, post = `property "`, `" is unsupported`
	if strings.HasPrefix(reason, pre) && strings.HasSuffix(reason, post) {
		return reason[len(pre) : len(reason)-len(post)], true
	}
	return "", false
}

// patternInWords says what a field's pattern in the spec asks for, in
// words, for the fields a person types.
func patternInWords(field string, value any) (string, bool) {
	v, _ := value.(string)
	switch field {
	case "dataset_url":
		if _, err := loader.ParseURL(v); err != nil {
			return err.Error(), true
		}
		return "must be an http(s) URL, such as https://example.org/data.tab", true
	case "image_url_template":
		return "must contain {id}, where each row's id goes, e.g. https://host/images/{id}.jpg", true
	}
	return "", false
}
