package standin

import (
	"net/http"
	"slices"
)

// REST API versions (X-GitHub-Api-Version). github.com supports both;
// GHES (all versions the stand-in imitates) only the first. A request
// without the header gets the default, 2022-11-28.
const (
	APIVersionDefault = "2022-11-28"
	APIVersion2026    = "2026-03-10"
	apiVersionDocs    = "https://docs.github.com/rest/about-the-rest-api/api-versions"
)

func (s *Server) supportedAPIVersions() []string {
	if s.opt.GHESVersion != "" {
		return []string{APIVersionDefault}
	}
	return []string{APIVersionDefault, APIVersion2026}
}

// checkAPIVersion answers 400 to an unsupported X-GitHub-Api-Version, as
// GitHub does, and otherwise sets X-GitHub-Api-Version-Selected. Every
// version asked for ("" when none) is counted for APIVersions.
func (s *Server) checkAPIVersion(w http.ResponseWriter, r *http.Request) bool {
	v := r.Header.Get("X-GitHub-Api-Version")
	s.mu.Lock()
	if s.apiVersions == nil {
		s.apiVersions = map[string]int{}
	}
	s.apiVersions[v]++
	s.mu.Unlock()
	if v == "" {
		v = APIVersionDefault
	}
	if !slices.Contains(s.supportedAPIVersions(), v) {
		writeJSONRaw(w, http.StatusBadRequest, map[string]string{
			"message":           "Unsupported 'X-GitHub-Api-Version': " + v,
			"documentation_url": apiVersionDocs,
			"status":            "400",
		})
		return false
	}
	w.Header().Set("X-GitHub-Api-Version-Selected", v)
	return true
}

// APIVersions counts the API requests by the X-GitHub-Api-Version they
// sent ("" for none), refused ones included.
func (s *Server) APIVersions() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copyMap(s.apiVersions)
}
