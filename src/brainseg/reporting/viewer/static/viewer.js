// brainseg view: the index table's sorting, the subject page (reference beside prediction,
// synchronised NiiVue views) and the upload page. Everything it loads comes from this server.
"use strict";

(function () {
  const config = () => JSON.parse(document.getElementById("config").textContent);
  const $ = (id) => document.getElementById(id);

  function setStatus(text, state) {
    $("status").textContent = text;
    if (state) document.body.dataset.ready = state;
  }

  // ---- index: sort the table by a column (click again: the other way)
  function sortable(table) {
    const heads = Array.from(table.tHead.rows[0].cells);
    heads.forEach((th, col) => {
      th.addEventListener("click", () => {
        const ascending = th.dataset.order !== "asc";
        heads.forEach((h) => delete h.dataset.order);
        th.dataset.order = ascending ? "asc" : "desc";
        const numeric = th.dataset.type === "number";
        const key = (row) => {
          const cell = row.cells[col];
          if (!numeric) return cell.textContent;
          const value = parseFloat(cell.dataset.value ?? cell.textContent);
          return Number.isNaN(value) ? -Infinity : value;
        };
        const rows = Array.from(table.tBodies[0].rows);
        rows.sort((a, b) => {
          const x = key(a), y = key(b);
          const order = numeric ? x - y : x.localeCompare(y);
          return ascending ? order : -order;
        });
        rows.forEach((row) => table.tBodies[0].appendChild(row));
      });
    });
  }

  // ---- NiiVue panels
  async function makeViewer(canvas) {
    const nv = new niivue.Niivue({
      backColor: [0, 0, 0, 1], crosshairColor: [0.85, 0.85, 0.85, 0.5],
      show3Dcrosshair: true, dragAndDropEnabled: false, isColorbar: false,
      multiplanarShowRender: niivue.SHOW_RENDER.NEVER, loadingText: "loading",
      crosshairWidth: 1, multiplanarLayout: niivue.MULTIPLANAR_TYPE.GRID,
    });
    await nv.attachToCanvas(canvas);
    nv.setSliceType(nv.sliceTypeMultiplanar);
    nv.setInterpolation(true); // nearest neighbour: label maps keep their edges
    return nv;
  }

  // One canvas: a modality and its label overlays, at most one of them shown.
  class Panel {
    constructor(nv, base, overlays, colormaps, centre) {
      Object.assign(this, { nv, base, overlays, colormaps, centre, shown: null, opacity: 0 });
    }

    opacityOf(overlay) {
      return overlay === this.shown ? this.opacity : 0;
    }

    async load(modality) {
      const volume = (name, extra) => ({ url: `${this.base}/${name}.nii.gz`,
        name: `${name}.nii.gz`, ...extra });
      const saved = this.loaded ? this.nv.scene.crosshairPos : null;
      const centre = this.loaded ? null : this.centre;
      await this.nv.loadVolumes([volume(modality, { colormap: "gray" }),
        ...this.overlays.map((o) => volume(o, { opacity: 0 }))]);
      this.overlays.forEach((o, i) => {
        const overlay = this.nv.volumes[i + 1];
        overlay.colormapLabel = niivue.cmapper.makeLabelLut(this.colormaps[o]);
        overlay.opacity = this.opacityOf(o);
      });
      this.nv.updateGLVolume();
      if (saved || centre) {
        this.nv.scene.crosshairPos = saved || this.nv.mm2frac(centre);
        this.nv.drawScene();
      }
      this.loaded = true;
    }

    // one GPU refresh for all overlays (setOpacity would refresh once per volume)
    show(overlay, opacity) {
      Object.assign(this, { shown: overlay, opacity });
      if (!this.loaded) return;
      this.overlays.forEach((o, i) => { this.nv.volumes[i + 1].opacity = this.opacityOf(o); });
      this.nv.updateGLVolume();
    }
  }

  function legend(colormaps) {
    const box = $("legend");
    box.replaceChildren();
    colormaps.forEach((cm) => cm.I.forEach((value, i) => {
      if (!cm.labels[i]) return;
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = `rgb(${cm.R[i]}, ${cm.G[i]}, ${cm.B[i]})`;
      item.append(swatch, cm.labels[i]);
      box.append(item);
    }));
  }

  function fillModalities(select, modalities, chosen) {
    modalities.forEach((m) => select.add(new Option(m, m, false, m === chosen)));
  }

  // panels: {panel, overlay: () => name of its overlay}; the shared controls drive them all
  function wire(panels, modalities) {
    const draw = () => {
      const on = $("show-overlays").checked;
      const opacity = parseFloat($("opacity").value);
      panels.forEach(({ panel, overlay }) => panel.show(on ? overlay() : null, opacity));
    };
    const load = async () => {
      setStatus("loading…", "loading");
      try {
        const on = $("show-overlays").checked;
        panels.forEach(({ panel, overlay }) => {
          Object.assign(panel, { shown: on ? overlay() : null,
            opacity: parseFloat($("opacity").value) });
        });
        await Promise.all(panels.map(({ panel }) => panel.load($("modality").value)));
        setStatus("ready: scroll or click in a view to move through the volume", "true");
      } catch (err) {
        setStatus(`cannot load the volumes: ${err}`, "error");
      }
    };
    fillModalities($("modality"), modalities, modalities.includes("flair") ? "flair" : modalities[0]);
    $("modality").addEventListener("change", load);
    $("show-overlays").addEventListener("change", draw);
    $("opacity").addEventListener("input", draw);
    $("render").addEventListener("change", () => {
      const mode = $("render").checked ? niivue.SHOW_RENDER.ALWAYS : niivue.SHOW_RENDER.NEVER;
      panels.forEach(({ panel }) => {
        panel.nv.opts.multiplanarShowRender = mode;
        panel.nv.drawScene();
      });
    });
    return { load, draw };
  }

  async function subjectPage(cfg) {
    const fmt = (v) => (v === null ? "n/a" : v.toFixed(3));
    if (Object.values(cfg.dice).some((v) => v !== null)) $("dice").textContent = `Dice WT ${fmt(cfg.dice.WT)} · TC ${fmt(cfg.dice.TC)} · ` +
      `ET ${fmt(cfg.dice.ET)} · mean ${fmt(cfg.dice.mean)}`;
    if (cfg.download) {
      $("download").href = cfg.download;
      $("download").hidden = false;
    }
    for (const step of ["previous", "next"]) {
      if (cfg[step]) {
        $(step).href = `/subjects/${encodeURIComponent(cfg[step])}`;
        $(step).hidden = false;
      }
    }
    const colormaps = { reference: cfg.labels, prediction: cfg.labels, errors: cfg.errors };
    $("left-caption").textContent = cfg.hasReference ? "reference" : "image";
    const [left, right] = await Promise.all([makeViewer($("left")), makeViewer($("right"))]);
    left.broadcastTo(right, { "2d": true, "3d": true });
    right.broadcastTo(left, { "2d": true, "3d": true });
    const rightOverlays = cfg.hasReference ? ["prediction", "errors"] : ["prediction"];
    const panels = [
      { panel: new Panel(left, cfg.base, cfg.hasReference ? ["reference"] : [], colormaps,
        cfg.centre),
        overlay: () => "reference" },
      { panel: new Panel(right, cfg.base, rightOverlays, colormaps, cfg.centre),
        overlay: () => $("right-overlay").value },
    ];
    if (!cfg.hasReference) $("right-overlay").remove(1);
    const { load, draw } = wire(panels, cfg.modalities);
    const relabel = () => {
      const errors = $("right-overlay").value === "errors";
      $("right-caption").textContent = errors ? "prediction: WT errors" : "prediction";
      legend(errors ? [cfg.errors] : [cfg.labels]);
      draw();
    };
    $("right-overlay").addEventListener("change", relabel);
    legend([cfg.labels]);
    await load();
  }

  function uploadPage(cfg) {
    const fields = $("fields");
    cfg.modalities.forEach((m) => {
      const label = document.createElement("label");
      const input = document.createElement("input");
      Object.assign(input, { type: "file", name: m, accept: ".nii,.nii.gz,.gz", required: true });
      label.append(`${m} `, input);
      fields.append(label);
    });
    if (!cfg.hasModel) {
      $("send").disabled = true;
      setStatus("no model: start brainseg view with --model to segment uploads");
    }
    $("upload-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = new FormData($("upload-form"));
      let total = 0;
      for (const value of form.values()) total += value.size || 0;
      if (total > cfg.maxBytes) {
        setStatus(`the files are ${(total / 1e6).toFixed(0)} MB, over the limit of ` +
          `${(cfg.maxBytes / 1e6).toFixed(0)} MB`, "error");
        return;
      }
      $("send").disabled = true;
      setStatus("uploading and segmenting…", "loading");
      try {
        const reply = await fetch("/api/upload", { method: "POST", body: form });
        const body = await reply.json();
        if (!reply.ok) throw new Error(body.detail || reply.statusText);
        setStatus("done", "true");
        window.location.assign(body.page);
      } catch (err) {
        setStatus(`refused: ${err.message}`, "error");
      } finally {
        $("send").disabled = false;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const cfg = config();
    const page = document.body.dataset.page;
    if (page === "index") sortable($("subjects"));
    if (page === "subject") subjectPage(cfg).catch((err) => setStatus(`${err}`, "error"));
    if (page === "upload") uploadPage(cfg);
  });
})();
