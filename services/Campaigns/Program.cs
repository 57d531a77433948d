using Crm.BuildingBlocks.Hosting;
using Crm.Campaigns;

var app = CampaignsModule.Build(args);
return await app.RunOrMigrateAsync(args);
