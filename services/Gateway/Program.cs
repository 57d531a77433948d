using Crm.Gateway;

var app = GatewayModule.Build(args);
await app.RunAsync();
