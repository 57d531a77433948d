using Crm.BuildingBlocks.Hosting;
using Crm.Delivery;

var app = DeliveryModule.Build(args);
return await app.RunOrMigrateAsync(args);
