/* The book's page script: draws mermaid diagrams (also from file://) and lets a reader enlarge them.
 *
 * Each diagram is drawn at its natural size (mermaid's 16 px labels) instead of being squeezed into
 * a fixed-height box; one wider than the column scrolls sideways inside its own frame, with a
 * shadow at the edge that says so. Diagrams are redrawn when the reader switches light/dark theme,
 * so labels always contrast with their boxes.
 */
(function () {
  "use strict";

  const isDark = () => document.documentElement.dataset.theme === "dark";

  function markScrollable(element) {
    const update = () => element.classList.toggle("is-scrollable", element.scrollWidth > element.clientWidth + 1);
    update();
    window.addEventListener("resize", update);
  }

  function addEnlargeButton(frame) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "diagram-enlarge";
    button.textContent = "Enlarge";
    button.setAttribute("aria-label", "Show this diagram full screen");
    button.addEventListener("click", () => {
      const dialog = document.createElement("dialog");
      dialog.className = "diagram-dialog";
      const close = document.createElement("button");
      close.type = "button";
      close.className = "diagram-close";
      close.textContent = "Close";
      close.addEventListener("click", () => dialog.close());
      dialog.addEventListener("close", () => dialog.remove());
      dialog.append(close, frame.querySelector("svg").cloneNode(true));
      document.body.append(dialog);
      dialog.showModal();
    });
    frame.prepend(button);
  }

  async function drawDiagrams() {
    const blocks = Array.from(document.querySelectorAll("pre.mermaid"));
    if (!blocks.length || !window.mermaid) return;
    for (const block of blocks) {
      if (block.dataset.source === undefined) block.dataset.source = block.textContent;
      block.removeAttribute("data-processed");
      block.textContent = block.dataset.source;
    }
    window.mermaid.initialize({
      startOnLoad: false,
      deterministicIds: true,
      theme: isDark() ? "dark" : "default",
      fontFamily: "var(--pst-font-family-base, system-ui, sans-serif)",
      flowchart: { useMaxWidth: false, htmlLabels: true },
      sequence: { useMaxWidth: false },
    });
    await window.mermaid.run({ nodes: blocks });
    for (const block of blocks) {
      let frame = block.closest(".diagram-frame");
      if (!frame) {
        frame = document.createElement("div");
        frame.className = "diagram-frame";
        block.replaceWith(frame);
        frame.append(block);
        addEnlargeButton(frame);
        markScrollable(frame);
      }
    }
  }

  function markWideBlocks() {
    // Tables, outputs and display math wider than the column scroll inside their own box; mark
    // them so CSS can draw the edge shadow that tells the reader there is more to the right.
    const selector = "div.math, mjx-container[display='true'], .cell_output pre, .output pre, table, .table-wrapper";
    const update = () => {
      for (const element of document.querySelectorAll(selector)) {
        element.classList.toggle("is-scrollable", element.scrollWidth > element.clientWidth + 1);
      }
    };
    update();
    window.addEventListener("resize", update);
    if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
      window.MathJax.startup.promise.then(update);
    }
  }

  function start() {
    drawDiagrams().catch((error) => console.warn("diagram not drawn:", error));
    markWideBlocks();
    new MutationObserver(() => drawDiagrams().catch((error) => console.warn("diagram not drawn:", error)))
      .observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
