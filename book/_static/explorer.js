// Explorers without a kernel (lnn/explorer.py, static mode). Listed in _config.yml (html_js_files),
// so it is loaded on every page. Each cell output <div class="lnn-explorer"> holds only data: the
// initial frame as an <img> and, in <script type="application/json" class="lnn-explorer-data">, the
// parameters (name, label, value strings, initial index), one alt text per frame and the frames
// (data: URLs), in row-major order over the parameters. This script adds one labelled
// <input type="range"> per parameter (arrow keys, Home/End, Page Up/Down work natively), its
// current value beside it, and switches the image's src and alt as the sliders move.
(function () {
  "use strict";
  var counter = 0;

  function setup(root) {
    if (root.dataset.lnnExplorerReady) return;
    var dataNode = root.querySelector("script.lnn-explorer-data");
    var img = root.querySelector("img.lnn-explorer-frame");
    if (!dataNode || !img) return;
    var data = JSON.parse(dataNode.textContent);
    root.dataset.lnnExplorerReady = "1";
    var id = "lnn-explorer-" + ++counter;
    var indices = data.params.map(function (p) { return p.initial; });

    var controls = document.createElement("div");
    controls.className = "lnn-explorer-controls";
    controls.setAttribute("role", "group");
    controls.setAttribute("aria-label", "Explorer parameters");

    function frameIndex() {
      var k = 0;
      data.params.forEach(function (p, i) { k = k * p.values.length + indices[i]; });
      return k;
    }
    function show() {
      var k = frameIndex();
      img.src = data.frames[k];
      img.alt = data.alts[k];
      root.dataset.frame = String(k);
    }

    data.params.forEach(function (p, i) {
      var row = document.createElement("div");
      row.className = "lnn-explorer-control";
      var inputId = id + "-" + p.name;
      var label = document.createElement("label");
      label.htmlFor = inputId;
      label.textContent = p.label;
      var input = document.createElement("input");
      input.type = "range";
      input.id = inputId;
      input.name = p.name;
      input.min = "0";
      input.max = String(p.values.length - 1);
      input.step = "1";
      input.value = String(p.initial);
      input.setAttribute("aria-valuetext", p.label + " " + p.values[p.initial]);
      input.disabled = p.values.length < 2;
      var output = document.createElement("output");
      output.htmlFor = inputId;
      output.textContent = p.values[p.initial];
      input.addEventListener("input", function () {
        indices[i] = parseInt(input.value, 10);
        output.textContent = p.values[indices[i]];
        input.setAttribute("aria-valuetext", p.label + " " + p.values[indices[i]]);
        show();
      });
      row.appendChild(label);
      row.appendChild(input);
      row.appendChild(output);
      controls.appendChild(row);
    });
    root.insertBefore(controls, root.firstChild);
    show();
  }

  function setupAll() {
    document.querySelectorAll("div.lnn-explorer").forEach(setup);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setupAll);
  } else {
    setupAll();
  }
})();
