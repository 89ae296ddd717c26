/* After every view file has registered itself: draw the navigation, show the view. */
"use strict";
window.Streamer.start();
