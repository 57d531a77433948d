using Crm.BuildingBlocks.Hosting;
using Crm.Segmentation;

var app = SegmentationModule.Build(args);
return await app.RunOrMigrateAsync(args);
