// hyco-ws and hyco-https depend on http@latest, which the registry does not serve; Node core http is what they use.
module.exports = require("node:http");
