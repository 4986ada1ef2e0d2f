// Reader-side behaviour of the book's pages (listed in _config.yml, html_js_files).

// Read from file:// (no server), the search page cannot fetch the result pages to show a snippet
// under each result: browsers block fetch() on file:// URLs, and every result threw an error.
// List the results (title and link, from the local index) without snippets there; a page served
// over http(s) keeps them.
if (window.location.protocol === "file:" && typeof DOCUMENTATION_OPTIONS !== "undefined") {
  DOCUMENTATION_OPTIONS.SHOW_SEARCH_SUMMARY = false;
}
