/* Injected by the rendering check (never part of the published book) as the first script of every
 * page: records console errors and, once math and diagrams are drawn, measures the page and writes
 * the figures as JSON into <pre id="__measurements__">, which Chromium's --dump-dom returns. */
(function () {
  "use strict";
  const errors = [];
  window.addEventListener("error", (event) => errors.push(String(event.message || event.type)));
  window.addEventListener("unhandledrejection", (event) => errors.push("unhandled rejection: " + String(event.reason)));
  const consoleError = console.error.bind(console);
  console.error = (...args) => { errors.push(args.map(String).join(" ")); consoleError(...args); };

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const CJK = /[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]/;

  async function settled() {
    for (let i = 0; i < 100; i++) {
      const mathReady = !window.MathJax || (window.MathJax.startup && window.MathJax.startup.promise);
      const diagrams = document.querySelectorAll("pre.mermaid");
      const drawn = Array.from(diagrams).every((d) => d.querySelector("svg"));
      if (mathReady && drawn) break;
      await sleep(100);
    }
    if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) await window.MathJax.startup.promise;
    await document.fonts.ready;
    await sleep(300);
  }

  function luminance(color) {
    const m = color.match(/rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)/);
    if (!m) return null;
    const [r, g, b] = m.slice(1, 4).map((v) => {
      const c = parseFloat(v) / 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  }

  function contrast(a, b) {
    const la = luminance(a), lb = luminance(b);
    if (la === null || lb === null) return null;
    return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
  }

  function box(element) {
    const r = element.getBoundingClientRect();
    return { width: Math.round(r.width), height: Math.round(r.height) };
  }

  async function measure() {
    await settled();
    const column = document.querySelector("article.bd-article") || document.body;
    const columnWidth = column.clientWidth;
    const math = [];
    for (const block of document.querySelectorAll("div.math")) {
      const rendered = block.querySelector("mjx-container") || block;
      math.push({
        text: block.textContent.trim().slice(0, 60),
        width: Math.round(rendered.scrollWidth),
        boxWidth: Math.round(block.clientWidth),
        scrollable: block.classList.contains("is-scrollable") || rendered.classList.contains("is-scrollable"),
      });
    }
    const diagrams = [];
    for (const svg of document.querySelectorAll("pre.mermaid svg")) {
      const labels = Array.from(svg.querySelectorAll(".nodeLabel, .edgeLabel, text")).filter((l) => l.textContent.trim());
      const heights = labels.map((l) => l.getBoundingClientRect().height).filter((h) => h > 0);
      const sizes = labels.map((l) => parseFloat(getComputedStyle(l).fontSize)).filter((s) => s > 0);
      const scale = svg.getBoundingClientRect().width / (svg.viewBox.baseVal.width || svg.getBoundingClientRect().width);
      const frame = svg.closest(".diagram-frame");
      const contrasts = [];
      for (const node of svg.querySelectorAll("g.node")) {
        const label = node.querySelector(".nodeLabel, text");
        const shape = node.querySelector("rect, polygon, circle, ellipse, path");
        if (label && shape) {
          const c = contrast(getComputedStyle(label).color || getComputedStyle(label).fill, getComputedStyle(shape).fill);
          if (c !== null) contrasts.push(c);
        }
      }
      diagrams.push({
        ...box(svg),
        minLabelPx: sizes.length ? Math.min(...sizes) * scale : null,
        minLabelHeight: heights.length ? Math.min(...heights) : null,
        scrollable: !!frame && frame.scrollWidth > frame.clientWidth + 1,
        enlarge: !!frame && !!frame.querySelector(".diagram-enlarge"),
        enlargeText: frame && frame.querySelector(".diagram-enlarge") ? frame.querySelector(".diagram-enlarge").textContent : "",
        minContrast: contrasts.length ? Math.min(...contrasts) : null,
      });
    }
    const cjkElements = Array.from(document.querySelectorAll("body *"))
      .filter((e) => e.children.length === 0 && CJK.test(e.textContent) && e.getClientRects().length);
    const cjkText = cjkElements.length;
    const cjkWithoutFont = cjkElements
      .filter((e) => !getComputedStyle(e).fontFamily.replace(/["']/g, "").startsWith("Noto Sans SC subset"))
      .map((e) => e.tagName.toLowerCase() + ": " + e.textContent.trim().slice(0, 30));
    const faces = Array.from(document.fonts).filter((f) => f.family.replace(/["']/g, "") === "Noto Sans SC subset");
    const wide = [];
    for (const element of document.querySelectorAll("article *")) {
      const r = element.getBoundingClientRect();
      if (r.right > window.innerWidth + 1 && !element.closest("div.math, .diagram-frame, .table-wrapper, table, pre, .cell_output, mjx-container")) {
        wide.push(element.tagName.toLowerCase() + "." + element.className + ": " + element.textContent.trim().slice(0, 40));
      }
    }
    const inlineMathCut = Array.from(document.querySelectorAll("mjx-container:not([display='true'])"))
      .filter((m) => !m.closest("div.math, table, .table-wrapper, pre") && m.getBoundingClientRect().right > window.innerWidth + 1)
      .map((m) => m.textContent.trim().slice(0, 40));
    const result = {
      inlineMathCut,
      viewport: window.innerWidth,
      theme: document.documentElement.dataset.theme || "",
      pageWidth: document.documentElement.scrollWidth,
      columnWidth,
      math,
      diagrams,
      cjkElements: cjkText,
      cjkFaces: faces.map((f) => f.status),
      cjkRendered: cjkText ? document.fonts.check("16px 'Noto Sans SC subset'", "中文") : null,
      cjkWithoutFont: cjkWithoutFont.slice(0, 10),
      wideElements: wide.slice(0, 10),
      errors,
    };
    const out = document.createElement("pre");
    out.id = "__measurements__";
    out.textContent = JSON.stringify(result);
    document.body.append(out);
  }

  window.addEventListener("load", () => { measure().catch((e) => errors.push("measure failed: " + e)); });
})();
