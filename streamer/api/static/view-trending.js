/* Trending now: the most created-with tracks of the current window, per genre. */
"use strict";

(function (S) {
  const REFRESH_MS = 10000;

  S.registerView({
    id: "trending",
    title: "Trending",
    render(root, params, ctx) {
      const p = {window: params.window || S.defaultWindow, genre: params.genre || "",
                 limit: params.limit || "20", at: params.at || ""};
      const frame = S.frame(root, "Trending now",
        "Tracks by creates (a use that makes something with the sound) in the current " +
        "window, refreshed every 10 s. Empty genre: all genres." +
        (p.at ? " Shown: the window containing " + S.fmtTime(Number(p.at)) + "." : ""));
      frame.add(S.controls([
        {name: "genre", label: "Genre", placeholder: "all, or e.g. lofi", size: 14},
        {name: "window", label: "Window", type: "select", options: S.windows},
        {name: "limit", label: "Top", type: "select", options: ["10", "20", "50", "100"]},
      ], p, (values) => ctx.setParams({...values, at: p.at})));

      S.loader(ctx, frame, async () => {
        const body = await S.api("/v1/trending", {window: p.window, limit: p.limit,
                                                  genre: p.genre, at: p.at});
        const notes = [];
        if (p.genre && body.genre !== p.genre) {
          notes.push(S.el("p", {class: "message info", role: "status"},
            "This worker does not rank trending per genre yet: showing all genres."));
        }
        const summary = S.el("p", {class: "summary"},
          S.el("strong", {}, body.genre ? body.genre : "All genres"), ", window ",
          S.el("strong", {}, body.window), " from " + S.fmtTime(body.start_ms) + " to " +
          S.fmtTime(body.end_ms) + ". AI share of these tracks' creates: ",
          S.el("strong", {class: "ai-share", "data-value": body.ai_share},
               S.fmtPct(body.ai_share)));
        if (!body.items.length) {
          frame.result.replaceChildren(summary, ...notes);
          S.message(frame.message, "empty", "Nothing trending in this window yet: no " +
            "creates counted" + (p.genre ? " for genre " + p.genre : "") + ".");
          return "empty";
        }
        const rows = body.items.map((item, index) => ({rank: index + 1, ...item}));
        const table = S.table([
          {key: "rank", label: "#", numeric: true},
          {key: "track_id", label: "Track", format: (id) => S.el("a", {href: S.href("track",
            {track: id, window: p.window})}, id)},
          {key: "genre", label: "Genre"},
          {key: "ai_origin", label: "Origin", format: (o) => S.originBadge(o)},
          {key: "creates", label: "Creates", numeric: true},
        ], rows, {class: "trending"});
        frame.result.replaceChildren(summary, ...notes, table);
        return "ready";
      }, p.at ? null : REFRESH_MS);
    },
  });
})(window.Streamer);
