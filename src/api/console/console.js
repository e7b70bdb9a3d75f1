// commitd console: the one script, an enhancement only (every page works without it).
// Times are shown in UTC; this adds the reader's local time to each time's hover text.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var times = document.querySelectorAll("time[datetime]");
  for (var i = 0; i < times.length; i++) {
    var t = new Date(times[i].getAttribute("datetime"));
    if (!isNaN(t.getTime())) {
      times[i].title = "UTC; your local time: " + t.toLocaleString();
    }
  }
});
