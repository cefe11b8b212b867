// HyperStyle wire colours: each HYPERSTYLE_* socket type gets its own colour, so a model, a latent and weight deltas
// can be told apart at a glance (the palettes colour only core types; all others share one grey).
import { app } from "../../scripts/app.js";

const COLOURS = {
  HYPERSTYLE_MODEL: "#E76F51",
  HYPERSTYLE_W_ENCODER: "#2A9D8F",
  HYPERSTYLE_GENERATOR: "#E9C46A",
  HYPERSTYLE_RESTYLE: "#90BE6D",
  HYPERSTYLE_LATENT: "#F72585",
  HYPERSTYLE_DELTAS: "#9D4EDD",
  HYPERSTYLE_DIRECTION: "#FFB4A2",
  HYPERSTYLE_GANSPACE: "#A0C4FF",
  HYPERSTYLE_ALIGNMENT: "#CDB4DB",
};

// Loading a colour palette (at start and on every switch) first blanks the colour of every known type, then sets the
// palette's own. So each colour sits behind an accessor that ignores the blank but takes a palette's explicit colour.
function keepColours(table) {
  for (const [type, colour] of Object.entries(COLOURS)) {
    let current = table[type] || colour;
    Object.defineProperty(table, type, {
      get: () => current,
      set: (value) => { current = value || colour; },
      enumerable: true,
      configurable: true,
    });
  }
}

app.registerExtension({
  name: "HyperStyle.WireColours",
  async setup() {
    keepColours(window.LGraphCanvas.link_type_colors);           // the wires
    keepColours(app.canvas.default_connection_color_byType);     // the slot dots
    app.canvas.setDirty(true, true);
  },
});
