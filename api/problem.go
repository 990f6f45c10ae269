package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tsnemap/tsnemap/openapi"
)

// problemBase prefixes the type URI of every problem; the suffix names the
// kind, so clients can branch on it without parsing the detail.
const problemBase = "https://tsnemap.dev/problems/"

// problem is an error answer (RFC 9457). Handlers return it as an error;
// the error handler writes it.
type problem struct {
	status int
	kind   string
	title  string
	detail string
	fields []openapi.FieldProblem
}

func (p *problem) Error() string { return fmt.Sprintf("%d %s: %s", p.status, p.title, p.detail) }

func newProblem(status int, kind, title, detail string, fields ...openapi.FieldProblem) *problem {
	return &problem{status: status, kind: kind, title: title, detail: detail, fields: fields}
}

func fieldProblem(status int, field, message string) *problem {
	return newProblem(status, "invalid-request", "Invalid request", field+": "+message,
		openapi.FieldProblem{Field: field, Message: message})
}

func (p *problem) body() openapi.Problem {
	b := openapi.Problem{Type: problemBase + p.kind, Title: p.title, Status: p.status, Detail: p.detail}
	if len(p.fields) > 0 {
		b.Errors = &p.fields
	}
	return b
}

// errorHandler answers every error with problem+json: ours, Echo's (unknown
// route, wrong method, body too large) and anything else (a 500 that hides
// the internals, which are logged).
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var p *problem
	var he *echo.HTTPError
	switch {
	case errors.As(err, &p):
	case errors.As(err, &he):
		msg := fmt.Sprint(he.Message)
		switch he.Code {
		case http.StatusNotFound:
			p = newProblem(he.Code, "not-found", "Not found", "no such resource: "+c.Request().URL.Path)
		case http.StatusMethodNotAllowed:
			p = newProblem(he.Code, "method-not-allowed", "Method not allowed",
				c.Request().Method+" is not allowed on "+c.Request().URL.Path)
		case http.StatusRequestEntityTooLarge:
			p = newProblem(he.Code, "too-large", "Request body too large", "the request body must be at most 1 MB")
		case http.StatusBadRequest:
			// The generated wrapper's parameter binding errors.
			p = newProblem(he.Code, "invalid-request", "Invalid request", strings.TrimSpace(msg))
		default:
			p = newProblem(he.Code, "http-error", http.StatusText(he.Code), msg)
		}
	default:
		s.log.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
		p = newProblem(http.StatusInternalServerError, "internal", "Internal server error",
			"the server failed to answer; the error is logged")
	}
	c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
	if p.status == http.StatusServiceUnavailable && c.Response().Header().Get("Retry-After") == "" {
		// Nothing was done: say when trying again may help (a full store
		// needs an operator; an unreachable one is usually back soon).
		after := "5"
		if p.kind == "store-full" {
			after = "30"
		}
		c.Response().Header().Set("Retry-After", after)
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(p.status)
		return
	}
	_ = c.JSON(p.status, p.body())
}
