#!/usr/bin/env node
// The published entry point: the compiled CLI (built by `npm run build`, which `prepare` runs).
import "../dist/cli/main.js"
