import { config } from "zod";

// Imported first by main.tsx, before @flotilla/contracts builds its schemas: zod probes `new Function`
// when an object schema is made, and the UI's CSP (no 'unsafe-eval') reports that probe as a
// violation on every page load. jitless skips the probe; the UI parses nothing hot.
config({ jitless: true });
