// The ipywidgets HTML manager (vendor/html-manager/embed-amd.js, loaded right after this file)
// locates its icon fonts from the require.js URL of its own modules, by default
// "@jupyter-widgets/html-manager/dist/..." next to the page, which does not exist. Map that
// module path to the copies served with the book (no CDN), and set the global it also reads.
(function () {
  var base = new URL("vendor/html-manager/", document.currentScript.src).href;
  window.__jupyter_widgets_assets_path__ = base;
  if (window.requirejs) {
    window.requirejs.config({ paths: { "@jupyter-widgets/html-manager/dist": base.replace(/\/$/, "") } });
  }
})();
