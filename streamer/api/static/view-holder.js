/* A rights holder's usage over a date range: per right and use, per territory, per day. */
"use strict";

(function (S) {
  const DAY_MS = 86400000;
  const MAX_DAYS_CHARTED = 93;

  function isoDay(ms) { return new Date(ms).toISOString().slice(0, 10); }

  function dayMs(text) {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(text)) return null;
    const ms = Date.parse(text + "T00:00:00Z");
    return Number.isNaN(ms) ? null : ms;
  }

  function rightRows(rights) {
    const rows = [];
    for (const [right, counts] of Object.entries(rights)) {
      for (const use of Object.keys(counts.uses)) {
        rows.push({right, use, uses: counts.uses[use],
                   weighted_micro: counts.weighted_micro[use]});
      }
    }
    return rows;
  }

  function addRights(total, rights) {
    for (const [right, counts] of Object.entries(rights)) {
      const into = total[right] || (total[right] = {uses: {}, weighted_micro: {}});
      for (const use of Object.keys(counts.uses)) {
        into.uses[use] = (into.uses[use] || 0) + counts.uses[use];
        into.weighted_micro[use] = (into.weighted_micro[use] || 0) + counts.weighted_micro[use];
      }
    }
    return total;
  }

  const COLUMNS = [
    {key: "right", label: "Right"},
    {key: "use", label: "Use"},
    {key: "uses", label: "Uses", numeric: true},
    {key: "weighted_micro", label: "Weighted uses", numeric: true, format: S.fmtMicro},
  ];

  S.registerView({
    id: "holder",
    title: "Holder",
    render(root, params, ctx) {
      const today = Date.now() - Date.now() % DAY_MS;
      const monthStart = isoDay(today).slice(0, 8) + "01";
      const p = {holder: params.holder || "", from: params.from || monthStart,
                 to: params.to || isoDay(today)};
      const frame = S.frame(root, "A rights holder's usage",
        "Uses and weighted uses (uses x share) of one holder over UTC days, per right, per " +
        "territory and per day. Both days are included.");
      frame.add(S.controls([
        {name: "holder", label: "Holder id", placeholder: "e.g. label-1", size: 20,
         required: true},
        {name: "from", label: "From", type: "date"},
        {name: "to", label: "To", type: "date"},
      ], p, ctx.setParams));
      if (!p.holder) {
        S.message(frame.message, "info", "Enter a rights holder id.");
        ctx.state("empty");
        return;
      }
      const first = dayMs(p.from), last = dayMs(p.to);
      if (first === null || last === null || last < first) {
        S.message(frame.message, "error", "From and to must be days (YYYY-MM-DD), from " +
          "not after to.");
        ctx.state("error");
        return;
      }
      const path = "/v1/holders/" + encodeURIComponent(p.holder) + "/usage";
      const dayWindow = S.windows.includes("1d") ? "1d" : null;

      S.loader(ctx, frame, async () => {
        const range = await S.api(path, {from: p.from, to: p.to});
        const byTerritory = "from" in range
          ? await S.territories(path, {from: p.from, to: p.to})
          : {note: "Territories need a worker with date ranges (this one has none yet)."};
        const rangesSupported = "from" in range;
        const days = [];
        for (let ms = first; ms <= last && days.length < MAX_DAYS_CHARTED; ms += DAY_MS) {
          days.push(ms);
        }
        const daily = dayWindow ? await S.mapLimit(days, 6, (ms) => S.api(path,
          {window: dayWindow, at: ms})) : [];
        const complete = daily.length === (last - first) / DAY_MS + 1;
        let totals = range.rights;
        const notes = [];
        if (!rangesSupported) {
          if (!complete) {
            throw new S.ApiError("bad", "This worker has no date ranges yet and the range " +
              "is longer than " + MAX_DAYS_CHARTED + " days: choose a shorter one.");
          }
          totals = daily.reduce((sum, answer) => addRights(sum, answer.rights), {});
          notes.push("Totals added up from daily windows (this worker has no date ranges " +
            "yet).");
        } else if (range.closed_days !== undefined) {
          notes.push(range.closed_days + " of the range's days are closed (final).");
        }
        ctx.disposeCharts();
        frame.result.replaceChildren();
        const rows = rightRows(totals);
        const uses = rows.reduce((sum, row) => sum + row.uses, 0);
        frame.result.append(S.el("p", {class: "summary"}, "Holder ",
          S.el("strong", {}, p.holder), ", " + p.from + " to " + p.to + ": " +
          S.fmtInt(uses) + " uses. ", notes.join(" ")));
        const csvName = "holder-" + p.holder + "-" + p.from + "-" + p.to;
        frame.result.append(S.el("h3", {}, "Per right and use"),
          S.downloadButton("Download CSV", csvName + ".csv", () => S.csv(COLUMNS, rows)),
          S.table(COLUMNS, rows, {class: "rights"}));

        const where = S.el("section", {class: "territories"}, S.el("h3", {}, "By territory"));
        frame.result.append(where);
        if (byTerritory.note) {
          where.append(S.el("p", {class: "message info", role: "status"}, byTerritory.note));
        } else {
          const territoryRows = [];
          for (const [territory, rights] of Object.entries(byTerritory.body.territories)) {
            for (const row of rightRows(rights)) {
              if (row.uses) territoryRows.push({territory, ...row});
            }
          }
          territoryRows.sort((a, b) => b.uses - a.uses || a.territory.localeCompare(b.territory));
          const columns = [{key: "territory", label: "Territory"}, ...COLUMNS.slice(0, 2),
            {key: "uses", label: "Uses", numeric: true,
             format: S.territoryBars(territoryRows, "uses")}, COLUMNS[3]];
          where.append(
            S.downloadButton("Download CSV", csvName + "-territories.csv",
                             () => S.csv(columns, territoryRows)),
            territoryRows.length ? S.table(columns, territoryRows, {class: "territory"})
              : S.el("p", {class: "message empty", role: "status"},
                     "No territory counts in this range."));
        }

        if (daily.length) {
          const chartBox = S.el("div", {class: "chart", id: "chart-holder"});
          frame.result.append(S.el("h3", {}, "Per day" + (complete ? "" : " (the first " +
            MAX_DAYS_CHARTED + " days)")), chartBox);
          const series = [];
          Object.keys(daily[0].rights).forEach((right, r) => {
            Object.keys(daily[0].rights[right].uses).forEach((use, u) => {
              series.push({label: right + " " + use + "s",
                           color: S.PALETTE[(2 * r + u) % S.PALETTE.length],
                           dash: r ? [6, 4] : undefined,
                           values: daily.map((answer) => answer.rights[right].uses[use])});
            });
          });
          S.chart(chartBox, {title: "Uses per day: " + p.holder, x: days.slice(0, daily.length),
                             series, y: {label: "uses"}}, ctx);
        }
        if (!uses) {
          S.message(frame.message, "empty", "No uses of " + p.holder + " between " + p.from +
            " and " + p.to + " (is the id right?).");
          return "empty";
        }
        return "ready";
      });
    },
  });
})(window.Streamer);
